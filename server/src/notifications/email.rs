//! Email for session starts and handouts, through an SMTP relay (`--smtp-url`).
//!
//! Requests never wait on SMTP: the inbox sink queues messages into a bounded channel
//! ([`Mailer::enqueue`]; a full queue drops the message and logs it, the inbox entry stays)
//! and one background task sends them in turn. Every header is built with lettre's typed
//! builders (mailboxes, subject), which encode what they are given, so a classroom or
//! display name can never add a header of its own.

use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use crate::config::Secret;

/// Messages waiting to be sent; beyond this, new ones are dropped (and logged).
const QUEUE: usize = 1024;

/// How long one SMTP exchange may take.
const SMTP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// One message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Email {
    pub(crate) to: Mailbox,
    pub(crate) subject: String,
    pub(crate) body: String,
}

/// What an email is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Topic {
    SessionStarted,
    Handout,
}

impl Email {
    /// The message telling `display_name` <`address`> about `topic` in `classroom`;
    /// `None` if the stored address does not parse (logged by the caller).
    pub(crate) fn new(
        topic: Topic,
        classroom: &str,
        display_name: &str,
        address: &str,
    ) -> Option<Self> {
        let address: Address = address.parse().ok()?;
        // The API refuses control characters in names already; this keeps the typed
        // builders from ever seeing one (lettre panics formatting a display name with a
        // line break rather than encoding it).
        let classroom = &one_line(classroom);
        let display_name = &one_line(display_name);
        let (subject, what) = match topic {
            Topic::SessionStarted => (
                format!("{classroom}: a live session has started"),
                format!("A live session has started in {classroom}. Open Lectern to join it."),
            ),
            Topic::Handout => (
                format!("{classroom}: you have a new handout"),
                format!(
                    "Your teacher in {classroom} handed out a document; your own copy is \
                     waiting for you in Lectern."
                ),
            ),
        };
        let body = format!(
            "Hello {display_name},\n\n{what}\n\n-- \nYou get this email as a student of \
             {classroom}. You can turn these emails off in your Lectern notification \
             settings.\n"
        );
        Some(Self {
            to: Mailbox::new(Some(display_name.to_owned()), address),
            subject,
            body,
        })
    }

    /// The message, headers from the typed builders only.
    fn message(&self, from: &Mailbox) -> Result<Message, lettre::error::Error> {
        Message::builder()
            .from(from.clone())
            .to(self.to.clone())
            .subject(self.subject.as_str())
            .header(ContentType::TEXT_PLAIN)
            .body(self.body.clone())
    }
}

/// `text` with every control character (line breaks included) as a space.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Where email goes from (the configuration).
#[derive(Debug, Clone)]
pub(crate) struct EmailSettings {
    /// `smtp://`, `smtp://...?tls=required` (STARTTLS) or `smtps://` (TLS) relay URL.
    pub(crate) url: Secret,
    /// The `From` mailbox.
    pub(crate) from: Mailbox,
}

impl EmailSettings {
    /// The settings, or `None` without `--smtp-url`; an error if `--smtp-from` does not
    /// parse as a mailbox.
    pub(crate) fn from_config(config: &crate::Config) -> anyhow::Result<Option<Self>> {
        let Some(url) = &config.smtp_url else {
            return Ok(None);
        };
        let from = config
            .smtp_from
            .as_deref()
            .ok_or_else(|| anyhow::anyhow!("--smtp-url needs --smtp-from"))?
            .parse::<Mailbox>()
            .map_err(|error| anyhow::anyhow!("--smtp-from is not a mailbox: {error}"))?;
        Ok(Some(Self {
            url: url.clone(),
            from,
        }))
    }
}

/// The queue into the sending task. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Mailer {
    queue: mpsc::Sender<Email>,
}

impl Mailer {
    /// Starts the sending task on `tasks`; it stops when `stop` is cancelled (what is still
    /// queued then is dropped, and counted in the log).
    pub(crate) fn start(
        settings: EmailSettings,
        tasks: &TaskTracker,
        stop: CancellationToken,
    ) -> anyhow::Result<Self> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(settings.url.expose())
            .map_err(|error| anyhow::anyhow!("--smtp-url: {error}"))?
            .timeout(Some(SMTP_TIMEOUT))
            .build();
        let (queue, receiver) = mpsc::channel(QUEUE);
        tasks.spawn(
            send_queued(transport, settings.from, receiver, stop)
                .instrument(tracing::info_span!("email")),
        );
        Ok(Self { queue })
    }

    /// Queues `email`; when the queue is full it is dropped and logged.
    pub(crate) fn enqueue(&self, email: Email) {
        if let Err(error) = self.queue.try_send(email) {
            tracing::warn!(%error, "email queue full or closed; email dropped");
        }
    }
}

async fn send_queued(
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    mut queue: mpsc::Receiver<Email>,
    stop: CancellationToken,
) {
    loop {
        let email = tokio::select! {
            () = stop.cancelled() => break,
            email = queue.recv() => match email {
                Some(email) => email,
                None => return,
            },
        };
        let message = match email.message(&from) {
            Ok(message) => message,
            Err(error) => {
                tracing::warn!(%error, "email not built; dropped");
                continue;
            }
        };
        let sent = tokio::select! {
            () = stop.cancelled() => break,
            sent = transport.send(message) => sent,
        };
        match sent {
            Ok(_) => tracing::debug!(subject = %email.subject, "email sent"),
            Err(error) => {
                tracing::warn!(error = &error as &dyn std::error::Error, "email not sent")
            }
        }
    }
    queue.close();
    let mut dropped = 0usize;
    while queue.try_recv().is_ok() {
        dropped += 1;
    }
    if dropped > 0 {
        tracing::warn!(dropped, "emails still queued at shutdown were not sent");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cannot_add_headers() {
        let from: Mailbox = "Lectern <lectern@example.edu>".parse().expect("from");
        let email = Email::new(
            Topic::SessionStarted,
            "Physics\r\nBcc: victim@example.com",
            "Eve\r\nBcc: other@example.com",
            "eve@example.edu",
        )
        .expect("email");
        let text =
            String::from_utf8(email.message(&from).expect("message").formatted()).expect("utf-8");
        let headers = text.split("\r\n\r\n").next().expect("headers");
        assert!(
            !headers
                .split("\r\n")
                .any(|line| line.to_ascii_lowercase().starts_with("bcc:")),
            "{headers}"
        );
        assert!(headers.contains("To: "), "{headers}");
    }

    #[test]
    fn bad_addresses_make_no_email() {
        assert!(Email::new(Topic::Handout, "Physics", "Ann", "not an address").is_none());
        let email = Email::new(Topic::Handout, "Physics", "Ann", "ann@example.edu").expect("ok");
        assert_eq!(email.subject, "Physics: you have a new handout");
        assert!(email.body.contains("Hello Ann"));
    }
}
