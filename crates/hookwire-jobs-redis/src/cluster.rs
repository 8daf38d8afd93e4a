//! Redis Cluster: the same scripts over the async cluster client. Every key of a queue hashes
//! to the slot of `{queue}`, so each script runs on one node.

use std::sync::Arc;
use std::time::Duration;

use hookwire_jobs::Error;
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;

use crate::backend::{BLOCK_MAX, RESPONSE_TIMEOUT, RedisBackend};

fn client(nodes: &[String], response: Duration) -> Result<ClusterClient, Error> {
    ClusterClient::builder(nodes.to_vec())
        .connection_timeout(Duration::from_secs(2))
        .response_timeout(response)
        .build()
        .map_err(Error::backend)
}

impl RedisBackend<ClusterConnection> {
    /// Connects to a Redis Cluster through any of its `nodes` (`redis://host:port/` URLs).
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), hookwire_jobs::Error> {
    /// let nodes = vec!["redis://127.0.0.1:7000/".to_owned()];
    /// let backend = hookwire_jobs_redis::RedisBackend::connect_cluster(&nodes).await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect_cluster(nodes: &[String]) -> Result<Self, Error> {
        let conn = client(nodes, RESPONSE_TIMEOUT)?
            .get_async_connection()
            .await
            .map_err(Error::backend)?;
        let blocking = client(nodes, BLOCK_MAX + Duration::from_secs(5))?;
        Ok(Self::from_parts(
            conn,
            Arc::new(move || {
                let c = blocking.clone();
                Box::pin(async move { c.get_async_connection().await })
            }),
        ))
    }
}
