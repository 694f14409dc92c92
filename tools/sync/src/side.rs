//! One side of a sync (the source or the destination): its URL, how to connect, and a
//! connection that is opened again when it was lost (a service restarted, a network
//! cut), so that a follower rides through restarts of either side.

use std::time::Duration;

use anyhow::{bail, Context};
use cairn_client::{Client, ClientUrl, ConnectOptions};
use tokio::sync::Mutex;

/// The source or the destination.
pub struct Side {
    /// "source" or "destination", for messages.
    pub role: &'static str,
    pub url: ClientUrl,
    options: ConnectOptions,
    client: Mutex<Option<Client>>,
}

impl Side {
    pub fn new(role: &'static str, url: ClientUrl, cert_dirs: &[std::path::PathBuf]) -> Side {
        let options = ConnectOptions {
            cert_dirs: cert_dirs.to_vec(),
            connect_timeout: Duration::from_secs(10),
            ..ConnectOptions::default()
        };
        Side {
            role,
            url,
            options,
            client: Mutex::new(None),
        }
    }

    /// The URL without its password.
    pub fn name(&self) -> String {
        self.url.redacted()
    }

    /// The open connection, or a new one when there is none or it was closed.
    pub async fn client(&self) -> anyhow::Result<Client> {
        let mut slot = self.client.lock().await;
        if let Some(client) = slot.as_ref().filter(|c| !c.is_closed()) {
            return Ok(client.clone());
        }
        let client = Client::connect(&self.url, &self.options)
            .await
            .with_context(|| format!("connecting to the {} {}", self.role, self.name()))?;
        *slot = Some(client.clone());
        Ok(client)
    }

    /// Connects, checks that the credentials are an admin's, and answers the service id.
    pub async fn identify(&self) -> anyhow::Result<String> {
        let client = self.client().await?;
        let whoami = client
            .whoami()
            .await
            .with_context(|| format!("asking the {} {} who we are", self.role, self.name()))?;
        if !whoami.admin {
            bail!(
                "{} is not an admin on the {} {}: cairn-sync needs admin credentials on both services",
                whoami.user,
                self.role,
                self.name()
            );
        }
        let status = client
            .status()
            .await
            .with_context(|| format!("reading the status of the {} {}", self.role, self.name()))?;
        Ok(status.service_id)
    }
}
