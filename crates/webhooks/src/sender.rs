//! The HTTP client webhooks go out through.

use crate::guard::AllowList;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most bytes of an endpoint's answer kept in the attempt log.
pub const RESPONSE_EXCERPT_BYTES: usize = 1024;

/// Text from outside (an endpoint's answer, an error it caused) made fit to store: invalid
/// UTF-8 and NUL bytes, which PostgreSQL's `text` rejects, become U+FFFD. An answer that could
/// not be stored would leave its attempt unrecorded and its delivery re-sent outside its
/// policy, for ever.
pub fn storable(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).replace('\0', "\u{FFFD}")
}

/// What one request came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The HTTP status, when an answer came.
    pub status: Option<u16>,
    pub duration: Duration,
    /// The start of the answer's body.
    pub body: Option<String>,
    /// Why no usable answer came (refused address, connection refused, timeout, ...).
    pub error: Option<String>,
    /// A `Retry-After` the endpoint sent with 429 or 503.
    pub retry_after: Option<Duration>,
}

impl Outcome {
    pub fn succeeded(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

/// Resolves names to allowed addresses only, so the address checked is the one connected to.
/// `lookup` turns a name into addresses: the system's resolver, or a fixed table in tests.
struct GuardedResolver<L> {
    allow: AllowList,
    lookup: L,
}

impl<L, F> Resolve for GuardedResolver<L>
where
    L: Fn(String) -> F + Send + Sync + 'static,
    F: Future<Output = std::io::Result<Vec<IpAddr>>> + Send + 'static,
{
    fn resolve(&self, name: Name) -> Resolving {
        let allow = self.allow.clone();
        let host = name.as_str().to_owned();
        let resolving = (self.lookup)(host.clone());
        Box::pin(async move {
            // A name that does not resolve is told apart from one that resolves only to
            // refused addresses by nothing: the difference would let a tenant map the
            // deployment's internal names.
            let allowed: Vec<SocketAddr> = resolving
                .await
                .unwrap_or_default()
                .into_iter()
                .filter(|ip| allow.permits(*ip))
                .map(|ip| SocketAddr::new(ip, 0))
                .collect();
            if allowed.is_empty() {
                return Err(
                    format!("{host} does not resolve to an address webhooks may reach").into(),
                );
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// The system's resolver.
async fn system_lookup(host: String) -> std::io::Result<Vec<IpAddr>> {
    Ok(tokio::net::lookup_host((host.as_str(), 0))
        .await?
        .map(|a| a.ip())
        .collect())
}

/// Sends webhooks: no redirects followed, every request bounded by its timeout.
#[derive(Clone)]
pub struct Sender {
    client: reqwest::Client,
    allow: AllowList,
}

/// The sender could not be built.
#[derive(Debug, thiserror::Error)]
#[error("could not build the webhook HTTP client")]
pub struct SenderError(#[source] reqwest::Error);

impl Sender {
    pub fn new(allow: AllowList) -> Result<Self, SenderError> {
        Self::with_lookup(allow, system_lookup)
    }

    /// A sender whose names resolve through `lookup`.
    fn with_lookup<L, F>(allow: AllowList, lookup: L) -> Result<Self, SenderError>
    where
        L: Fn(String) -> F + Send + Sync + 'static,
        F: Future<Output = std::io::Result<Vec<IpAddr>>> + Send + 'static,
    {
        beckon_runtime::install_crypto_provider();
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(concat!("Beckon-Webhooks/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(30))
            .dns_resolver(GuardedResolver {
                allow: allow.clone(),
                lookup,
            })
            .build()
            .map_err(SenderError)?;
        Ok(Self { client, allow })
    }

    /// Why `url` cannot be a webhook destination, if it cannot.
    pub fn check_url(&self, url: &str) -> Result<reqwest::Url, String> {
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("not a valid URL: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err("the URL must be http or https".into());
        }
        let literal = match parsed.host() {
            None => return Err("the URL has no host".into()),
            Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            Some(url::Host::Domain(_)) => None,
        };
        if let Some(ip) = literal
            && let Some(range) = self.allow.refusal(ip)
        {
            return Err(format!(
                "{ip} is an address webhooks may not reach: {range}"
            ));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err("the URL must not carry credentials".into());
        }
        Ok(parsed)
    }

    /// POSTs `body` with `headers`, giving up after `timeout`.
    pub async fn post(
        &self,
        url: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
        timeout: Duration,
    ) -> Outcome {
        let started = Instant::now();
        let failed = |error: String| Outcome {
            status: None,
            duration: started.elapsed(),
            body: None,
            error: Some(error),
            retry_after: None,
        };
        let url = match self.check_url(url) {
            Ok(u) => u,
            Err(e) => return failed(e),
        };
        let mut request = self
            .client
            .post(url)
            .timeout(timeout)
            .header("content-type", "application/json")
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let mut response = match request.send().await {
            Ok(r) => r,
            Err(e) => return failed(describe(&e)),
        };
        let status = response.status().as_u16();
        let retry_after = if status == 429 || status == 503 {
            response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after)
        } else {
            None
        };
        let mut excerpt = Vec::new();
        let mut error = None;
        while excerpt.len() < RESPONSE_EXCERPT_BYTES {
            match tokio::time::timeout(timeout.saturating_sub(started.elapsed()), response.chunk())
                .await
            {
                Ok(Ok(Some(chunk))) => excerpt.extend_from_slice(&chunk),
                Ok(Ok(None)) => break,
                Ok(Err(e)) => {
                    error = Some(describe(&e));
                    break;
                }
                Err(_) => {
                    error = Some("timed out reading the response".into());
                    break;
                }
            }
        }
        excerpt.truncate(RESPONSE_EXCERPT_BYTES);
        Outcome {
            status: Some(status),
            duration: started.elapsed(),
            body: Some(storable(&excerpt)),
            error,
            retry_after,
        }
    }

    /// The URL verification handshake: POSTs `{"type": "verification", "challenge": …}` and
    /// expects the challenge back as the body of a 2xx within `timeout`.
    pub async fn verify(
        &self,
        url: &str,
        challenge: &str,
        timeout: Duration,
    ) -> Result<(), String> {
        let body = serde_json::to_vec(
            &serde_json::json!({"type": "verification", "challenge": challenge}),
        )
        .unwrap_or_default();
        let outcome = self.post(url, &[], body, timeout).await;
        if let Some(error) = outcome.error.filter(|_| outcome.status.is_none()) {
            return Err(error);
        }
        match (outcome.status, outcome.body.as_deref().map(str::trim)) {
            (Some(s), Some(b)) if (200..300).contains(&s) && b == challenge => Ok(()),
            (Some(s), _) if !(200..300).contains(&s) => Err(format!("the endpoint answered {s}")),
            _ => Err("the endpoint did not echo the challenge".into()),
        }
    }
}

fn describe(err: &reqwest::Error) -> String {
    let kind = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    let mut out = kind.to_owned();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

/// `Retry-After` as seconds or an HTTP date, capped at one day.
pub fn parse_retry_after(raw: &str) -> Option<Duration> {
    let raw = raw.trim();
    let wait = if let Ok(secs) = raw.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let at = time::OffsetDateTime::parse(raw, &time::format_description::well_known::Rfc2822)
            .ok()?;
        let delta = at - time::OffsetDateTime::now_utc();
        Duration::try_from(delta).unwrap_or(Duration::ZERO)
    };
    Some(wait.min(Duration::from_secs(24 * 3600)))
}

/// Makes a sender shareable.
pub type SharedSender = Arc<Sender>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guard::tests::REFUSED;

    #[test]
    fn retry_after_is_read_as_seconds_or_a_date_and_capped() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("999999999"),
            Some(Duration::from_secs(24 * 3600))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    /// A sender whose names resolve through `table` only.
    fn sender_resolving(allow: AllowList, table: Vec<(String, Vec<IpAddr>)>) -> Sender {
        let table: std::collections::HashMap<String, Vec<IpAddr>> = table.into_iter().collect();
        Sender::with_lookup(allow, move |host: String| {
            let found = table.get(&host).cloned();
            async move {
                found.ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, host))
            }
        })
        .unwrap()
    }

    /// The special ranges' examples as URLs: by IP literal, and by a name resolving to it.
    fn refused_urls() -> Vec<(String, String, IpAddr)> {
        REFUSED
            .iter()
            .enumerate()
            .map(|(i, (addr, _))| {
                let ip: IpAddr = addr.parse().unwrap();
                let literal = match ip {
                    IpAddr::V4(v4) => format!("http://{v4}:9/hook"),
                    IpAddr::V6(v6) => format!("http://[{v6}]:9/hook"),
                };
                (literal, format!("host{i}.example"), ip)
            })
            .collect()
    }

    #[tokio::test]
    async fn every_special_range_is_refused_as_a_literal_and_through_a_name() {
        let urls = refused_urls();
        let sender = sender_resolving(
            AllowList::default(),
            urls.iter()
                .map(|(_, name, ip)| (name.clone(), vec![*ip]))
                .collect(),
        );
        for (literal, name, ip) in &urls {
            let refused = sender.check_url(literal).unwrap_err();
            assert!(refused.contains("may not reach"), "{literal}: {refused}");
            let outcome = sender
                .post(
                    &format!("http://{name}:9/hook"),
                    &[],
                    Vec::new(),
                    Duration::from_secs(5),
                )
                .await;
            let error = outcome.error.unwrap_or_default();
            assert!(
                outcome.status.is_none() && error.contains("may reach"),
                "{name} resolving to {ip}: {error}"
            );
        }
    }

    /// A tenant cannot map internal names through the answers: a name resolving only to
    /// refused addresses and a name that does not resolve fail alike.
    #[tokio::test]
    async fn an_internal_name_and_an_unknown_one_fail_alike() {
        let sender = sender_resolving(
            AllowList::default(),
            vec![("db.internal".into(), vec![ip("10.0.0.5")])],
        );
        let mut errors = Vec::new();
        for name in ["db.internal", "nothing.internal"] {
            let outcome = sender
                .post(
                    &format!("http://{name}:9/hook"),
                    &[],
                    Vec::new(),
                    Duration::from_secs(5),
                )
                .await;
            errors.push(outcome.error.unwrap_or_default().replace(name, "NAME"));
        }
        assert_eq!(errors[0], errors[1]);
    }

    /// Answers every request on `listener` with 200 and `reply`.
    fn serve(listener: tokio::net::TcpListener, reply: &'static str) {
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut request = [0u8; 4096];
                let _ = socket.read(&mut request).await;
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
                    reply.len()
                );
                let _ = socket.write_all(answer.as_bytes()).await;
            }
        });
    }

    #[tokio::test]
    async fn a_name_connects_to_the_allowed_address_it_resolves_to_and_never_another() {
        let allowed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = allowed.local_addr().unwrap().port();
        // An internal service on a refused address, listed first for the name.
        let internal = tokio::net::TcpListener::bind(("127.0.0.2", port))
            .await
            .unwrap();
        serve(allowed, "endpoint");
        serve(internal, "internal");
        let sender = sender_resolving(
            AllowList::parse("127.0.0.1/32").unwrap(),
            vec![(
                "mixed.example".into(),
                vec![ip("127.0.0.2"), ip("169.254.169.254"), ip("127.0.0.1")],
            )],
        );
        let outcome = sender
            .post(
                &format!("http://mixed.example:{port}/hook"),
                &[],
                b"{}".to_vec(),
                Duration::from_secs(5),
            )
            .await;
        assert_eq!(outcome.status, Some(200), "{outcome:?}");
        assert_eq!(outcome.body.as_deref(), Some("endpoint"));
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn urls_to_refused_addresses_schemes_and_credentials_are_rejected() {
        let sender = Sender::new(AllowList::default()).unwrap();
        assert!(sender.check_url("http://127.0.0.1:9/hook").is_err());
        assert!(sender.check_url("http://[::1]/hook").is_err());
        assert!(sender.check_url("ftp://example.com/").is_err());
        assert!(sender.check_url("https://user:pw@example.com/").is_err());
        assert!(sender.check_url("https://example.com/hook").is_ok());
        let open = Sender::new(AllowList::parse("127.0.0.1/32").unwrap()).unwrap();
        assert!(open.check_url("http://127.0.0.1:9/hook").is_ok());
    }
}
