//! The Lua scripts. `redis::Script` sends `EVALSHA` and reloads a script on `NOSCRIPT`, so each
//! travels once per server.

use std::sync::LazyLock;

use redis::Script;

macro_rules! script {
    ($name:ident, $file:literal) => {
        pub(crate) static $name: LazyLock<Script> =
            LazyLock::new(|| Script::new(include_str!(concat!("../../lua/", $file))));
    };
}

script!(FAIL, "fail.lua");
script!(REDRIVE, "redrive.lua");
script!(TRIM, "trim.lua");
script!(LEASE, "lease.lua");
script!(RELEASE, "release.lua");
