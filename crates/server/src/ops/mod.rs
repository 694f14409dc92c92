//! The operations of a service, below the methods: the lifecycle of each database, the
//! automatic READ_ONLY (`health`), change-feed wake-ups, the jobs registry and one file
//! per kind of job (`backup`, `restore`, `resync`), the backup schedule, settings
//! reloads, webhooks, migration mode (`follow`), the metrics and the login throttle. Methods and the service call in
//! here; nothing here calls the methods.

pub mod backup;
pub mod feeds;
pub mod follow;
pub mod health;
pub mod jobs;
pub mod lifecycle;
pub mod metrics;
pub mod mirror;
pub mod reload;
pub mod restore;
pub mod resync;
pub mod schedule;
pub mod shared;
pub mod throttle;
pub mod webhooks;
