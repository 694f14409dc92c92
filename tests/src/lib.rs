//! `cairn-tests`: end-to-end and crash tests that drive Cairn's real binaries. The
//! library holds what a test binary and the test that checks it must agree on, such as
//! the keys, values and acknowledgement lines of the crash writer (see [`crash`]), and
//! the tools of the end-to-end tests: real service processes ([`process`]), a raw
//! protocol client ([`raw`]), real curl against the HTTPS API ([`curl`]) and an OpenAPI validator ([`openapi_validator`], installed on first use), a real S3-compatible object store ([`garage`], installed
//! on first use by [`garage_install`]), the binaries of the format-1 release and the
//! working directories they write ([`format1`], built on first use), both kept in the
//! user's cache ([`cache`]), a small file system in a namespace of the test's own
//! ([`tmpfs`]) and a real HTTP endpoint that records webhook deliveries ([`webhook`]), faults injected
//! into a real service with libfiu ([`fiu`]), waiting for a service's jobs ([`jobs`]), a headless browser ([`selenium`], installed on
//! first use) and the crash campaign ([`torture`]).

pub mod cache;
pub mod cli;
pub mod crash;
pub mod curl;
pub mod fiu;
pub mod format1;
pub mod garage;
pub mod garage_install;
pub mod jobs;
pub mod openapi_validator;
pub mod process;
pub mod raw;
pub mod selenium;
pub mod tmpfs;
pub mod torture;
pub mod webhook;
