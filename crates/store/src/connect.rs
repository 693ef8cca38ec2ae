//! Opening a connection: TLS as the URL asks for it, in libpq's words.
//!
//! The URL takes libpq's TLS parameters, so a managed database's documented connection string
//! works as it is:
//!
//! | `sslmode`     | encrypted          | server certificate checked                          |
//! |---------------|--------------------|-----------------------------------------------------|
//! | `disable`     | no                 | —                                                   |
//! | `prefer`      | if the server can  | no (the default, as in libpq)                       |
//! | `require`     | yes                | no; as `verify-ca` when `sslrootcert` is given      |
//! | `verify-ca`   | yes                | signed by a CA of `sslrootcert`                     |
//! | `verify-full` | yes                | as `verify-ca`, and issued for the host connected to|
//!
//! `sslrootcert` is a PEM file of CA certificates, or `system` for the machine's trusted roots;
//! `sslcert` and `sslkey` are a client certificate and its key (PEM) for servers that ask for
//! one. Files are read when the URL is parsed: a missing or unreadable file fails at startup,
//! not at the first query.

use diesel::ConnectionError;
use diesel_async::AsyncPgConnection;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::config::SslMode as WireSslMode;
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};

/// How much of the server's identity a connection checks, as libpq's `sslmode` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(raw: &str) -> Result<Self, String> {
        Ok(match raw {
            "disable" => Self::Disable,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            // `allow` would try without TLS first: never what a deployment that names TLS wants.
            other => {
                return Err(format!(
                    "sslmode `{other}` is not one of disable, prefer, require, verify-ca, verify-full"
                ));
            }
        })
    }
}

/// A parsed database URL that opens connections.
#[derive(Clone)]
pub struct Connector {
    config: tokio_postgres::Config,
    mode: SslMode,
    tls: Option<Arc<ClientConfig>>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the URL: it may hold a password.
        f.debug_struct("Connector")
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

/// A connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The TLS handshake failed: the server's certificate is not trusted or not issued for
    /// the host, or the server refused ours. Trying again will not help.
    #[error(
        "the database's TLS handshake failed ({0}); check sslmode, sslrootcert and the host name in the database URL"
    )]
    Tls(String),
    /// Anything else: the server is down, refused the login, or the network broke.
    #[error("could not connect to the database: {0}")]
    Other(String),
}

impl From<ConnectError> for ConnectionError {
    fn from(err: ConnectError) -> Self {
        ConnectionError::BadConnection(err.to_string())
    }
}

impl Connector {
    /// Parses `url` (a `postgres://` URL or a `key=value` connection string, libpq's TLS
    /// parameters included) and reads the certificate files it names.
    pub fn from_url(url: &str) -> Result<Self, String> {
        let (rest, tls) = take_tls_params(url)?;
        let mut config: tokio_postgres::Config = rest
            .parse()
            .map_err(|e| format!("the database URL is invalid: {e}"))?;
        let mode = match (tls.sslmode.as_deref(), tls.rootcert.as_deref()) {
            // As libpq 16: the public roots prove only that a certificate names some host, so
            // they are trusted for the host connected to alone.
            (None | Some("verify-full"), Some("system")) => SslMode::VerifyFull,
            (Some(weak), Some("system")) => {
                return Err(format!(
                    "sslrootcert=system needs sslmode=verify-full, not {weak}: any publicly trusted certificate would pass otherwise"
                ));
            }
            (None, _) => SslMode::Prefer,
            (Some(raw), _) => SslMode::parse(raw)?,
        };
        // As libpq: `require` with a CA file checks the chain.
        let mode = match (mode, &tls.rootcert) {
            (SslMode::Require, Some(_)) => SslMode::VerifyCa,
            (mode, _) => mode,
        };
        // As libpq: no TLS over a Unix socket, whatever the mode.
        let local = config
            .get_hosts()
            .iter()
            .all(|h| !matches!(h, tokio_postgres::config::Host::Tcp(_)));
        config.ssl_mode(match mode {
            _ if local => WireSslMode::Disable,
            SslMode::Disable => WireSslMode::Disable,
            SslMode::Prefer => WireSslMode::Prefer,
            _ => WireSslMode::Require,
        });
        let tls = match mode {
            SslMode::Disable => None,
            _ => Some(Arc::new(client_config(mode, &tls)?)),
        };
        Ok(Self { config, mode, tls })
    }

    /// Connections say they are `name` (in `pg_stat_activity`), unless the URL names them.
    pub fn application_name(mut self, name: &str) -> Self {
        if self.config.get_application_name().is_none() {
            self.config.application_name(name);
        }
        self
    }

    /// The mode connections use.
    pub fn mode(&self) -> SslMode {
        self.mode
    }

    /// Opens a connection.
    pub async fn connect(&self) -> Result<AsyncPgConnection, ConnectError> {
        let opened = match &self.tls {
            None => match self.config.connect(tokio_postgres::NoTls).await {
                Ok((client, conn)) => {
                    AsyncPgConnection::try_from_client_and_connection(client, conn).await
                }
                Err(err) => return Err(classify(&err)),
            },
            Some(tls) => match self.config.connect(MakeRustls(tls.clone())).await {
                Ok((client, conn)) => {
                    AsyncPgConnection::try_from_client_and_connection(client, conn).await
                }
                Err(err) => return Err(classify(&err)),
            },
        };
        opened.map_err(|e| ConnectError::Other(e.to_string()))
    }
}

/// Opens one connection to `url`, outside any pool.
pub async fn open(url: &str) -> Result<AsyncPgConnection, crate::StoreError> {
    let connector = Connector::from_url(url).map_err(crate::StoreError::Config)?;
    Ok(connector.connect().await?)
}

/// Whether the failure is the TLS handshake's: a `rustls::Error` somewhere in its causes.
fn classify(err: &tokio_postgres::Error) -> ConnectError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>()
            && let Some(tls) = io.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>())
        {
            return ConnectError::Tls(tls.to_string());
        }
        if let Some(tls) = cause.downcast_ref::<rustls::Error>() {
            return ConnectError::Tls(tls.to_string());
        }
        source = cause.source();
    }
    // tokio-postgres says "db error" and leaves the server's words to its cause.
    let mut message = err.to_string();
    let mut cause = std::error::Error::source(err);
    while let Some(c) = cause {
        message = format!("{message}: {c}");
        cause = c.source();
    }
    // A server that answers the TLS request with "no": tokio-postgres' own TLS error.
    if message.starts_with("error performing TLS handshake") {
        return ConnectError::Tls(message);
    }
    ConnectError::Other(message)
}

/// libpq's TLS parameters, taken out of a URL's query string.
#[derive(Default)]
struct TlsParams {
    sslmode: Option<String>,
    rootcert: Option<String>,
    cert: Option<String>,
    key: Option<String>,
}

/// Splits `url` into the URL without libpq's TLS parameters (tokio-postgres knows only
/// `sslmode` disable/prefer/require) and those parameters. Takes both of libpq's forms: a URL,
/// whose parameters follow the first `?` after its user and password (which may hold one; as
/// in libpq, they end at the first `@` before any `/`, so an `@` in a parameter's value is not
/// taken for theirs), and a `key=value` connection string. A TLS parameter left where it
/// cannot be read is refused, never dropped: dropped, `sslmode=require` would become `prefer`.
fn take_tls_params(url: &str) -> Result<(String, TlsParams), String> {
    let mut params = TlsParams::default();
    let mut take = |key: &str, value: String| {
        let slot = match key {
            "sslmode" => &mut params.sslmode,
            "sslrootcert" => &mut params.rootcert,
            "sslcert" => &mut params.cert,
            "sslkey" => &mut params.key,
            _ => return false,
        };
        *slot = Some(value);
        true
    };
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        let mut kept = Vec::new();
        for (key, value, raw) in key_values(url)? {
            if !take(key, value) {
                kept.push(raw);
            }
        }
        return Ok((kept.join(" "), params));
    }
    let authority = url.find("://").map_or(0, |i| i + 3);
    let after_user = match url[authority..].find(['@', '/']) {
        Some(i) if url[authority + i..].starts_with('@') => authority + i + 1,
        _ => authority,
    };
    let Some(start) = url[after_user..].find('?').map(|i| after_user + i) else {
        return refuse_unread_tls_params(url).map(|()| (url.to_owned(), params));
    };
    let (base, query) = (&url[..start], &url[start + 1..]);
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if !take(key, percent_decode(value)?) {
            kept.push(pair);
        }
    }
    refuse_unread_tls_params(base)?;
    let rest = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((rest, params))
}

/// An error when `part` (what is left of a URL outside its parameters) still names a TLS
/// parameter: the URL is not what it seems, and guessing could connect without TLS.
fn refuse_unread_tls_params(part: &str) -> Result<(), String> {
    match ["sslmode=", "sslrootcert=", "sslcert=", "sslkey="]
        .into_iter()
        .find(|key| part.contains(key))
    {
        Some(key) => Err(format!(
            "the database URL has {key} where it cannot be read as a parameter; percent-encode \
             any '@', '/' or '?' in the user name and password"
        )),
        None => Ok(()),
    }
}

/// The `key=value` pairs of a libpq connection string (a value may be single-quoted, with
/// `\'` and `\\` inside), each with its raw text.
fn key_values(dsn: &str) -> Result<Vec<(&str, String, &str)>, String> {
    let mut pairs = Vec::new();
    let mut rest = dsn.trim_start();
    while !rest.is_empty() {
        let eq = rest
            .find('=')
            .ok_or("the database connection string has a key without a value")?;
        let key = rest[..eq].trim_end();
        let after = rest[eq + 1..].trim_start();
        let (value, used) = if let Some(quoted) = after.strip_prefix('\'') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next().map(|(_, c)| c)),
                    '\'' => {
                        end = Some(i + 1);
                        break;
                    }
                    c => value.push(c),
                }
            }
            let end = end.ok_or("the database connection string has an unclosed quote")?;
            (value, after.len() - quoted.len() + end)
        } else {
            let end = after.find(char::is_whitespace).unwrap_or(after.len());
            (after[..end].to_owned(), end)
        };
        let consumed = rest.len() - after.len() + used;
        pairs.push((key, value, &rest[..consumed]));
        rest = rest[consumed..].trim_start();
    }
    Ok(pairs)
}

fn percent_decode(raw: &str) -> Result<String, String> {
    let mut out = Vec::with_capacity(raw.len());
    let mut bytes = raw.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'%' => {
                let hex = [bytes.next(), bytes.next()];
                let digits = match hex {
                    [Some(h), Some(l)] => std::str::from_utf8(&[h, l])
                        .ok()
                        .and_then(|s| u8::from_str_radix(s, 16).ok()),
                    _ => None,
                };
                out.push(digits.ok_or("the database URL has a broken %-escape")?);
            }
            b => out.push(b),
        }
    }
    String::from_utf8(out).map_err(|_| "the database URL's parameters are not UTF-8".to_owned())
}

fn client_config(mode: SslMode, params: &TlsParams) -> Result<ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match mode {
        SslMode::Disable | SslMode::Prefer | SslMode::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unverified(provider))),
        SslMode::VerifyCa | SslMode::VerifyFull => {
            let Some(path) = params.rootcert.as_deref() else {
                return Err(format!(
                    "sslmode={} needs sslrootcert: a PEM file of the CA certificates that sign the server's, or `system` for this machine's trusted roots",
                    if mode == SslMode::VerifyCa {
                        "verify-ca"
                    } else {
                        "verify-full"
                    }
                ));
            };
            let roots = Arc::new(roots(path)?);
            let webpki =
                rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider)
                    .build()
                    .map_err(|e| format!("sslrootcert {path}: {e}"))?;
            if mode == SslMode::VerifyFull {
                builder.with_webpki_verifier(webpki)
            } else {
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(AnyName(webpki)))
            }
        }
    };
    match (&params.cert, &params.key) {
        (None, None) => Ok(builder.with_no_client_auth()),
        (Some(cert), Some(key)) => {
            let chain = certificates(cert)?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("sslkey {key}: no private key could be read ({e})"))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("sslcert/sslkey: {e}"))
        }
        _ => Err("sslcert and sslkey go together: give both or neither".to_owned()),
    }
}

fn certificates(path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{path}: {e}"))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{path}: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{path} holds no PEM certificate"));
    }
    Ok(certs)
}

fn roots(path: &str) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    let certs = if path == "system" {
        let found = rustls_native_certs::load_native_certs();
        if found.certs.is_empty() {
            return Err(format!(
                "sslrootcert=system: no trusted roots found on this machine ({:?})",
                found.errors
            ));
        }
        found.certs
    } else {
        certificates(path).map_err(|e| format!("sslrootcert {e}"))?
    };
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| format!("sslrootcert {path}: {e}"))?;
    }
    Ok(roots)
}

/// `prefer` and `require`: encrypted, whoever the server is (libpq's meaning). The handshake's
/// signatures are checked against the certificate presented, but nothing says whose it is.
#[derive(Debug)]
struct Unverified(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the chain must lead to a trusted CA; the name on the certificate is not
/// compared with the host.
#[derive(Debug)]
struct AnyName(Arc<rustls::client::WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        use rustls::CertificateError as C;
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                C::NotValidForName | C::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// tokio-postgres' TLS hook, over rustls.
#[derive(Clone)]
struct MakeRustls(Arc<ClientConfig>);

impl MakeTlsConnect<tokio_postgres::Socket> for MakeRustls {
    type Stream = RustlsStream;
    type TlsConnect = RustlsConnect;
    type Error = std::convert::Infallible;

    fn make_tls_connect(&mut self, host: &str) -> Result<RustlsConnect, Self::Error> {
        Ok(RustlsConnect {
            config: self.0.clone(),
            // Not a name (a Unix socket's directory): TLS is not used there.
            name: ServerName::try_from(host.to_owned()).ok(),
        })
    }
}

struct RustlsConnect {
    config: Arc<ClientConfig>,
    name: Option<ServerName<'static>>,
}

impl TlsConnect<tokio_postgres::Socket> for RustlsConnect {
    type Stream = RustlsStream;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<RustlsStream>> + Send>>;

    fn connect(self, stream: tokio_postgres::Socket) -> Self::Future {
        Box::pin(async move {
            let name = self.name.ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "the database host is not a name or address a certificate can be checked against",
                )
            })?;
            let stream = tokio_rustls::TlsConnector::from(self.config)
                .connect(name, stream)
                .await?;
            Ok(RustlsStream(stream))
        })
    }
}

struct RustlsStream(tokio_rustls::client::TlsStream<tokio_postgres::Socket>);

impl tokio_postgres::tls::TlsStream for RustlsStream {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

impl AsyncRead for RustlsStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for RustlsStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libpq_parameters_leave_the_url_and_the_rest_stays() {
        let (rest, params) = take_tls_params(
            "postgres://u:p@db:5432/beckon?sslmode=verify-full&application_name=x&sslrootcert=%2Fetc%2Fca.pem",
        )
        .unwrap();
        assert_eq!(rest, "postgres://u:p@db:5432/beckon?application_name=x");
        assert_eq!(params.sslmode.as_deref(), Some("verify-full"));
        assert_eq!(params.rootcert.as_deref(), Some("/etc/ca.pem"));
    }

    #[test]
    fn a_mode_that_checks_the_server_needs_a_ca() {
        let err = Connector::from_url("postgres://db/beckon?sslmode=verify-full").unwrap_err();
        assert!(err.contains("needs sslrootcert"), "{err}");
        let err = Connector::from_url("postgres://db/beckon?sslmode=verify-ca&sslrootcert=/nope")
            .unwrap_err();
        assert!(err.contains("/nope"), "{err}");
        let err = Connector::from_url("postgres://db/beckon?sslmode=allow").unwrap_err();
        assert!(err.contains("not one of"), "{err}");
        let err =
            Connector::from_url("postgres://db/beckon?sslmode=require&sslcert=/a.pem").unwrap_err();
        assert!(err.contains("go together"), "{err}");
    }

    #[test]
    fn modes_read_as_libpq_reads_them() {
        let mode = |url: &str| Connector::from_url(url).unwrap().mode();
        assert_eq!(mode("postgres://db/beckon"), SslMode::Prefer);
        assert_eq!(
            mode("postgres://db/beckon?sslmode=disable"),
            SslMode::Disable
        );
        assert_eq!(
            mode("postgres://db/beckon?sslmode=require"),
            SslMode::Require
        );
        assert_eq!(
            mode(
                "postgres://db/beckon?sslmode=require&sslrootcert=/etc/ssl/certs/ca-certificates.crt"
            ),
            SslMode::VerifyCa,
            "require with a CA checks the chain"
        );
        assert_eq!(
            mode("postgres://db/beckon?sslrootcert=system"),
            SslMode::VerifyFull,
            "the public roots check the host name too"
        );
        for weak in ["require", "verify-ca", "prefer", "disable"] {
            let err = Connector::from_url(&format!(
                "postgres://db/beckon?sslmode={weak}&sslrootcert=system"
            ))
            .unwrap_err();
            assert!(err.contains("needs sslmode=verify-full"), "{weak}: {err}");
        }
    }

    #[test]
    fn an_at_sign_in_a_parameter_value_never_lowers_the_mode() {
        for url in [
            "postgres://u:p@127.0.0.1:5432/db?sslmode=require&application_name=beckon@prod",
            "postgres://u:p@127.0.0.1:5432/db?application_name=beckon@prod&sslmode=require",
            "postgres://127.0.0.1:5432/db?application_name=beckon@prod&sslmode=require",
        ] {
            let connector = Connector::from_url(url).unwrap();
            assert_eq!(connector.mode(), SslMode::Require, "{url}");
            assert_eq!(
                connector.config.get_ssl_mode(),
                WireSslMode::Require,
                "{url}"
            );
        }
        let (rest, params) = take_tls_params(
            "postgres://u:p@db/d?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&application_name=a@b",
        )
        .unwrap();
        assert_eq!(rest, "postgres://u:p@db/d?application_name=a@b");
        assert_eq!(params.sslmode.as_deref(), Some("verify-full"));
        assert_eq!(params.rootcert.as_deref(), Some("/etc/ca.pem"));
        // Where the parameters cannot be told apart from the credentials, it is refused.
        let err =
            Connector::from_url("postgres://db?application_name=a@b&sslmode=require").unwrap_err();
        assert!(err.contains("sslmode= where it cannot be read"), "{err}");
    }

    #[test]
    fn a_password_with_a_question_mark_keeps_the_mode() {
        let connector =
            Connector::from_url("postgres://u:pa?ss@db:5432/d?sslmode=require").unwrap();
        assert_eq!(connector.mode(), SslMode::Require);
        assert_eq!(connector.config.get_password(), Some(&b"pa?ss"[..]));
        assert_eq!(connector.config.get_ssl_mode(), WireSslMode::Require);
    }

    #[test]
    fn a_connection_string_takes_the_same_parameters() {
        let connector =
            Connector::from_url("host=db port=5432 user=u dbname=d sslmode=require").unwrap();
        assert_eq!(connector.mode(), SslMode::Require);
        assert_eq!(connector.config.get_ssl_mode(), WireSslMode::Require);
        let err = Connector::from_url("host=db user=u sslmode=verify-full").unwrap_err();
        assert!(err.contains("needs sslrootcert"), "{err}");
        let err = Connector::from_url("host=db password='open sslmode=require").unwrap_err();
        assert!(err.contains("unclosed quote"), "{err}");
        let connector =
            Connector::from_url("host=db password='a b\\'c' sslmode=require dbname=d").unwrap();
        assert_eq!(connector.config.get_password(), Some(&b"a b'c"[..]));
        assert_eq!(connector.config.get_dbname(), Some("d"));
    }

    /// A server that answers the TLS request with "no" cannot be what a mode that requires TLS
    /// asks for: the process refuses to start rather than waiting for it.
    #[tokio::test]
    async fn a_server_without_tls_is_a_tls_failure_when_tls_is_required() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut request = [0u8; 8];
                if socket.read_exact(&mut request).await.is_ok() {
                    let _ = socket.write_all(b"N").await;
                }
            }
        });
        let connector =
            Connector::from_url(&format!("postgres://u@127.0.0.1:{port}/d?sslmode=require"))
                .unwrap();
        let err = connector.connect().await.map(drop).unwrap_err();
        assert!(
            matches!(&err, ConnectError::Tls(m) if m.contains("does not support TLS")),
            "{err:?}"
        );
    }

    #[test]
    fn a_unix_socket_is_never_encrypted() {
        let connector = Connector::from_url(
            "postgres://postgres@%2Fvar%2Frun%2Fpostgresql/beckon?sslmode=require",
        )
        .unwrap();
        assert_eq!(connector.config.get_ssl_mode(), WireSslMode::Disable);
    }

    #[test]
    fn a_plus_in_a_path_is_a_plus() {
        let err = Connector::from_url("postgres://db/d?sslmode=verify-ca&sslrootcert=/tmp/a+b.pem")
            .unwrap_err();
        assert!(err.contains("/tmp/a+b.pem"), "{err}");
    }
}
