//! The Lua scripts, one per state transition, each prefixed with `lua/common.lua` and the default
//! priority (whose jobs wait in a list instead of the sorted set).
//!
//! `redis::Script` sends `EVALSHA` and reloads the script on `NOSCRIPT` (after a restart or
//! `SCRIPT FLUSH`), so each script travels once per server.

use std::sync::LazyLock;

use redis::Script;

macro_rules! script {
    ($name:ident, $file:literal) => {
        pub(crate) static $name: LazyLock<Script> = LazyLock::new(|| {
            Script::new(&format!(
                "local DEFAULT_PRIORITY = {}\n{}\n{}",
                hookwire_jobs::DEFAULT_PRIORITY,
                include_str!("../lua/common.lua"),
                include_str!(concat!("../lua/", $file))
            ))
        });
    };
}

script!(ADD, "add.lua");
script!(CLAIM, "claim.lua");
script!(RENEW, "renew.lua");
script!(RECOVER, "recover.lua");
script!(COUNTS, "counts.lua");
script!(GET, "get.lua");
script!(DEAD, "dead.lua");
script!(REDRIVE, "redrive.lua");
script!(PROGRESS, "progress.lua");
script!(PAUSE, "pause.lua");
script!(DRAIN, "drain.lua");
script!(CLEAN, "clean.lua");
script!(SCHEDULE_SAVE, "schedule_save.lua");
script!(SCHEDULE_LIST, "schedule_list.lua");
script!(SCHEDULE_REMOVE, "schedule_remove.lua");
script!(TICK, "tick.lua");
