//! [`JobAdmin`] for [`RedisBackend`]: counts, records, dead letters, pause, drain, clean and
//! schedules, each one script call.

use super::*;

impl<C> JobAdmin for RedisBackend<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    fn counts<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<Counts, Error>> {
        Box::pin(async move {
            let keys = self.keys(queue)?;
            let out = array(self.run(&scripts::COUNTS, &keys, Vec::new()).await?)?;
            let n: Vec<u64> = out.iter().map(u64_of).collect::<Result<_, _>>()?;
            let [w, a, c, f, d, x] = <[u64; 6]>::try_from(n).map_err(|_| bad("counts reply"))?;
            Ok(Counts::new(w, a, c, f, d, x))
        })
    }

    fn get<'a>(
        &'a self,
        queue: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<JobRecord>, Error>> {
        Box::pin(async move {
            let keys = self.keys(queue)?;
            Ok(self.records(&keys, vec![id.to_owned()]).await?.pop())
        })
    }

    fn dead_letters<'a>(
        &'a self,
        queue: &'a str,
        offset: usize,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<JobRecord>, Error>> {
        Box::pin(async move {
            let keys = self.keys(queue)?;
            let args = vec![arg(offset), arg(limit.min(1000))];
            let ids = strings(self.run(&scripts::DEAD, &keys, args).await?)?;
            self.records(&keys, ids).await
        })
    }

    fn redrive<'a>(
        &'a self,
        queue: &'a str,
        ids: Option<Vec<String>>,
    ) -> BoxFuture<'a, Result<usize, Error>> {
        Box::pin(async move {
            let keys = self.keys(queue)?;
            let args = ids.unwrap_or_default().iter().map(arg).collect();
            let n = int(&self.run(&scripts::REDRIVE, &keys, args).await?)?;
            Ok(usize::try_from(n).unwrap_or(0))
        })
    }

    fn set_paused<'a>(&'a self, queue: &'a str, paused: bool) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let keys = self.keys(queue)?;
            self.run(&scripts::PAUSE, &keys, vec![arg(u8::from(paused))])
                .await?;
            Ok(())
        })
    }

    fn is_paused<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<bool, Error>> {
        Box::pin(async move {
            let keys = self.keys(queue)?;
            let mut conn = self.conn.clone();
            let v: Value = redis::cmd("EXISTS")
                .arg(&keys[PAUSED])
                .query_async(&mut conn)
                .await
                .map_err(backend_err)?;
            Ok(int(&v)? == 1)
        })
    }

    fn drain<'a>(&'a self, queue: &'a str, delayed: bool) -> BoxFuture<'a, Result<u64, Error>> {
        Box::pin(async move {
            let keys = self.keys(queue)?;
            let mut total = 0;
            loop {
                let args = vec![arg(u8::from(delayed)), arg(DRAIN_BATCH)];
                let n = u64_of(&self.run(&scripts::DRAIN, &keys, args).await?)?;
                total += n;
                if n < DRAIN_BATCH {
                    return Ok(total);
                }
            }
        })
    }

    fn clean<'a>(
        &'a self,
        queue: &'a str,
        state: JobState,
        older_than: Duration,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<String>, Error>> {
        Box::pin(async move {
            let keys = self.keys(queue)?;
            validate_clean_state(state)?;
            let limit = limit.min(MAX_CLEAN);
            if limit == 0 {
                return Ok(Vec::new());
            }
            let args = vec![arg(state.as_str()), arg(ms(older_than)), arg(limit)];
            strings(self.run(&scripts::CLEAN, &keys, args).await?)
        })
    }

    fn save_schedule<'a>(
        &'a self,
        queue: &'a str,
        id: &'a str,
        spec: String,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let keys = self.keys(queue)?;
            self.run(
                &scripts::SCHEDULE_SAVE,
                &keys,
                vec![arg(id), spec.into_bytes()],
            )
            .await?;
            Ok(())
        })
    }

    fn schedules<'a>(
        &'a self,
        queue: &'a str,
    ) -> BoxFuture<'a, Result<Vec<StoredSchedule>, Error>> {
        Box::pin(async move {
            let keys = self.keys(queue)?;
            let out = array(self.run(&scripts::SCHEDULE_LIST, &keys, Vec::new()).await?)?;
            out.chunks(4)
                .map(|c| {
                    let [id, spec, runs, last] = c else {
                        return Err(bad("schedule fields"));
                    };
                    let last = u64::try_from(int(last)?).ok();
                    Ok(StoredSchedule::new(
                        string(id)?,
                        string(spec)?,
                        u32_of(runs)?,
                        last,
                    ))
                })
                .collect()
        })
    }

    fn remove_schedule<'a>(
        &'a self,
        queue: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<bool, Error>> {
        Box::pin(async move {
            let keys = self.keys(queue)?;
            let n = int(&self
                .run(&scripts::SCHEDULE_REMOVE, &keys, vec![arg(id)])
                .await?)?;
            Ok(n == 1)
        })
    }

    fn enqueue_tick<'a>(
        &'a self,
        queue: &'a str,
        id: &'a str,
        tick_ms: u64,
        limit: Option<u32>,
        job: NewJob,
    ) -> BoxFuture<'a, Result<TickOutcome, Error>> {
        Box::pin(async move {
            let keys = self.keys(queue)?;
            job.validate()?;
            let job_id = job
                .id
                .ok_or_else(|| Error::invalid("a tick job needs an id"))?;
            let args = vec![
                arg(id),
                arg(tick_ms),
                arg(limit.unwrap_or(0)),
                job_id.into_bytes(),
                job.data.into_bytes(),
                arg(job.priority),
                arg(job.remove_on_complete.encode()),
                arg(job.remove_on_fail.encode()),
            ];
            match string(&self.run(&scripts::TICK, &keys, args).await?)?.as_str() {
                "enqueued" => Ok(TickOutcome::Enqueued),
                "done" => Ok(TickOutcome::AlreadyEnqueued),
                "limit" => Ok(TickOutcome::LimitReached),
                "removed" => Ok(TickOutcome::Removed),
                _ => Err(bad("tick reply")),
            }
        })
    }
}
