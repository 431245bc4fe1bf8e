//! TLS to the database: libpq's `sslmode`, `sslrootcert`, and the client certificate
//! `sslcert` / `sslkey` in the database URL (docs/operations.md, "TLS to the database").
//!
//! The postgres crate knows `sslmode` `disable`, `prefer` and `require` only, and none of
//! the others; they are therefore taken out of the connection string here, and the rest
//! goes to the crate as before.

use std::path::PathBuf;

use postgres_native_tls::MakeTlsConnector;

use crate::error::{Error, Result};

/// libpq's `sslmode`, with its meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Never TLS.
    Disable,
    /// TLS when the server offers it (libpq's `allow` tries plain first; drainctl treats
    /// it as `prefer`, which is no weaker).
    Prefer,
    /// TLS or no connection; the server's certificate is not checked unless a
    /// `sslrootcert` is given (then as `verify-ca`), as with libpq.
    Require,
    /// TLS, and the server's certificate must be signed by a trusted authority.
    VerifyCa,
    /// As `VerifyCa`, and the certificate must name the host drainctl dialled.
    VerifyFull,
}

impl SslMode {
    const NAMES: &'static str = "disable, allow, prefer, require, verify-ca, verify-full";

    fn parse(text: &str) -> Option<SslMode> {
        Some(match text {
            "disable" => SslMode::Disable,
            "allow" | "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }
}

/// The TLS settings a connection string gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub mode: SslMode,
    /// The certificates of the authorities to trust instead of the system's; `system`
    /// (as in libpq 16) means the system's.
    pub root_cert: Option<PathBuf>,
    /// The client certificate (PEM, its chain may follow) shown to a server that asks
    /// for one, and its private key (unencrypted PEM, PKCS#8).
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
}

impl Default for TlsSettings {
    fn default() -> Self {
        TlsSettings { mode: SslMode::Prefer, root_cert: None, client_cert: None, client_key: None }
    }
}

impl TlsSettings {
    /// The mode the postgres crate negotiates with.
    pub fn crate_mode(&self) -> postgres::config::SslMode {
        match self.mode {
            SslMode::Disable => postgres::config::SslMode::Disable,
            SslMode::Prefer => postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => postgres::config::SslMode::Require,
        }
    }

    /// The connector: what it trusts and checks follows [`SslMode`]. A `sslrootcert`
    /// that cannot be read or holds no certificate is a configuration error (78).
    pub fn connector(&self, source: &str) -> Result<MakeTlsConnector> {
        let mut builder = native_tls::TlsConnector::builder();
        // With TLS off, as with libpq, a `sslrootcert` is not read.
        let roots = match &self.root_cert {
            Some(path) if path.as_os_str() != "system" && self.mode != SslMode::Disable => {
                Some(read_root_certificates(path, source)?)
            }
            _ => None,
        };
        let checks_chain = matches!(self.mode, SslMode::VerifyCa | SslMode::VerifyFull) || roots.is_some();
        // The system's store is read only when it is what a certificate is checked against.
        builder.disable_built_in_roots(roots.is_some() || !checks_chain);
        for root in roots.into_iter().flatten() {
            builder.add_root_certificate(root);
        }
        builder.danger_accept_invalid_certs(!checks_chain);
        builder.danger_accept_invalid_hostnames(self.mode != SslMode::VerifyFull);
        if self.mode != SslMode::Disable {
            if let Some(identity) = self.client_identity(source)? {
                builder.identity(identity);
            }
        }
        let connector = builder.build().map_err(|error| {
            Error::Config(format!("cannot set up TLS for the database (URL from {source}): {error}"))
        })?;
        Ok(MakeTlsConnector::new(connector))
    }

    /// The client certificate and key, when `sslcert` names one. Either without the
    /// other, a file that cannot be read, a key others may read or one not in
    /// unencrypted PKCS#8 PEM is a configuration error (78) saying what to do.
    fn client_identity(&self, source: &str) -> Result<Option<native_tls::Identity>> {
        let (cert, key) = match (&self.client_cert, &self.client_key) {
            (None, None) => return Ok(None),
            (Some(cert), Some(key)) => (cert, key),
            (Some(_), None) => {
                return Err(Error::Config(format!(
                    "sslcert is given without sslkey (database URL from {source}); give both: \
                     ?sslcert=/path/client.crt&sslkey=/path/client.key"
                )))
            }
            (None, Some(_)) => {
                return Err(Error::Config(format!(
                    "sslkey is given without sslcert (database URL from {source}); give both: \
                     ?sslcert=/path/client.crt&sslkey=/path/client.key"
                )))
            }
        };
        let unreadable = |name: &str, path: &std::path::Path, error: std::io::Error| {
            Error::Config(format!(
                "{name} {} (database URL from {source}) cannot be read: {error}",
                path.display()
            ))
        };
        let cert_pem =
            crate::ownership::read_regular_file(cert).map_err(|error| unreadable("sslcert", cert, error))?;
        check_key_permissions(key, source)?;
        let key_pem =
            crate::ownership::read_regular_file(key).map_err(|error| unreadable("sslkey", key, error))?;
        let key_pem = key_pem.trim_ascii_start();
        let refuse_key = |why: &str| {
            Error::Config(format!(
                "sslkey {} (database URL from {source}) {why}; convert it with \
                 `openssl pkcs8 -topk8 -nocrypt -in KEY -out KEY.pk8` and name that file",
                key.display()
            ))
        };
        // `BEGIN ENCRYPTED PRIVATE KEY`, or a traditional key's `Proc-Type: 4,ENCRYPTED`.
        if key_pem.windows(9).any(|window| window == b"ENCRYPTED") {
            return Err(refuse_key("is encrypted, and drainctl takes no key password"));
        }
        if !key_pem.starts_with(b"-----BEGIN PRIVATE KEY-----") {
            return Err(refuse_key("is not an unencrypted PKCS#8 PEM key (-----BEGIN PRIVATE KEY-----)"));
        }
        native_tls::Identity::from_pkcs8(&cert_pem, key_pem).map(Some).map_err(|error| {
            Error::Config(format!(
                "sslcert {} and sslkey {} (database URL from {source}) cannot be used: {error}; give the \
                 client certificate in PEM and its own key",
                cert.display(),
                key.display()
            ))
        })
    }
}

/// As libpq: a key file must give its group and others nothing (0600, 0700); one owned
/// by root may be read by its group too (0640), whoever runs drainctl. The fix named keeps
/// the reader's read: a key of root's that another user reads through its group keeps
/// that (`chmod 640`).
fn check_key_permissions(key: &std::path::Path, source: &str) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let Ok(metadata) = std::fs::metadata(key) else { return Ok(()) };
    let refused = if metadata.uid() == 0 { 0o037 } else { 0o077 };
    let mode = metadata.mode() & 0o777;
    if mode & refused != 0 {
        let fix = if metadata.uid() == 0 && crate::ownership::effective_uid() != 0 {
            "chmod 640 it (root's key, read through its group)"
        } else {
            "chmod 600 it"
        };
        return Err(Error::Config(format!(
            "sslkey {} (database URL from {source}) has mode {mode:04o}: other users may read or change the \
             private key; {fix}",
            key.display()
        )));
    }
    Ok(())
}

/// Every certificate of a PEM file (a bundle may hold several).
fn read_root_certificates(path: &std::path::Path, source: &str) -> Result<Vec<native_tls::Certificate>> {
    let refuse = |why: String| {
        Error::Config(format!(
            "sslrootcert {} (database URL from {source}) {why}; give a PEM file of the certificate \
             authorities to trust, or sslrootcert=system",
            path.display()
        ))
    };
    if path.as_os_str().is_empty() {
        return Err(Error::Config(format!(
            "sslrootcert is empty (database URL from {source}); give a PEM file of the certificate \
             authorities to trust, or sslrootcert=system"
        )));
    }
    let bytes = crate::ownership::read_regular_file(path)
        .map_err(|error| refuse(format!("cannot be read: {error}")))?;
    let text = String::from_utf8(bytes).map_err(|_| refuse("is not text (UTF-8)".to_string()))?;
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut certificates = Vec::new();
    let mut rest = text.as_str();
    while let Some(start) = rest.find(BEGIN) {
        let Some(length) = rest[start..].find(END) else { break };
        let block = &rest[start..start + length + END.len()];
        let certificate = native_tls::Certificate::from_pem(block.as_bytes())
            .map_err(|error| refuse(format!("has a certificate that cannot be read: {error}")))?;
        certificates.push(certificate);
        rest = &rest[start + length + END.len()..];
    }
    if certificates.is_empty() {
        return Err(refuse("holds no PEM certificate".to_string()));
    }
    Ok(certificates)
}

/// Take `sslmode` and `sslrootcert` out of a connection string, URL
/// (`postgres://…?sslmode=verify-full&sslrootcert=/etc/ca.pem`) or key=value
/// (`host=db sslmode=verify-full`). The rest of the string is returned unchanged for
/// the postgres crate; a string this cannot read is returned whole, for the crate to
/// refuse. An unknown `sslmode` is a configuration error naming it.
pub fn split_tls_settings(url: &str, source: &str) -> Result<(String, TlsSettings)> {
    let (rest, found) = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        split_url(url)
    } else {
        split_key_values(url, is_tls_key).unwrap_or_else(|| (url.to_string(), Vec::new()))
    };
    let mut settings = TlsSettings::default();
    for (key, value) in found {
        if key == "sslmode" {
            settings.mode = SslMode::parse(&value).ok_or_else(|| {
                Error::Config(format!(
                    "invalid database URL (from {source}): invalid value for option `sslmode`: {value:?} is not \
                     one of {}; give postgres://USER:PASSWORD@HOST:PORT/DATABASE?sslmode=verify-full or \
                     key=value settings such as \"host=HOST dbname=DATABASE user=USER sslmode=require\"",
                    SslMode::NAMES
                ))
            })?;
        } else if key == "sslrootcert" {
            settings.root_cert = Some(PathBuf::from(value));
        } else if key == "sslcert" {
            settings.client_cert = Some(PathBuf::from(value)).filter(|path| !path.as_os_str().is_empty());
        } else if key == "sslkey" {
            settings.client_key = Some(PathBuf::from(value)).filter(|path| !path.as_os_str().is_empty());
        } else {
            return Err(Error::Config(format!(
                "the database URL (from {source}) sets {key}: drainctl takes no key password; give an \
                 unencrypted key (`openssl pkcs8 -topk8 -nocrypt -in KEY -out KEY.pk8`, then chmod 600 it)"
            )));
        }
    }
    Ok((rest, settings))
}

fn is_tls_key(key: &str) -> bool {
    matches!(key, "sslmode" | "sslrootcert" | "sslcert" | "sslkey" | "sslpassword")
}

/// The URL form: the query starts at the first `?` after the credentials (read as the
/// postgres crate reads them: up to the first `@`).
fn split_url(url: &str) -> (String, Vec<(String, String)>) {
    let scheme_end = url.find("://").map_or(0, |at| at + 3);
    let after_credentials = url[scheme_end..].find('@').map_or(scheme_end, |at| scheme_end + at + 1);
    let Some(question) = url[after_credentials..].find('?').map(|at| after_credentials + at) else {
        return (url.to_string(), Vec::new());
    };
    let mut kept = Vec::new();
    let mut found = Vec::new();
    for parameter in url[question + 1..].split('&') {
        let (key, value) = parameter.split_once('=').unwrap_or((parameter, ""));
        let key = percent_decode(key);
        if is_tls_key(&key) {
            found.push((key, percent_decode(value)));
        } else {
            kept.push(parameter);
        }
    }
    let mut rest = url[..question].to_string();
    if !kept.is_empty() {
        rest.push('?');
        rest.push_str(&kept.join("&"));
    }
    (rest, found)
}

pub(crate) fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let hex = bytes.get(index + 1..index + 3).and_then(|pair| std::str::from_utf8(pair).ok());
        match (bytes[index], hex.and_then(|pair| u8::from_str_radix(pair, 16).ok())) {
            (b'%', Some(byte)) => {
                decoded.push(byte);
                index += 3;
            }
            (byte, _) => {
                decoded.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// The values of setting `key` in a connection string of the key=value form, as libpq
/// reads them (see [`split_key_values`]), in order; none when it is not of that form.
pub(crate) fn key_value_settings(text: &str, key: &str) -> Vec<String> {
    split_key_values(text, |name| name == key)
        .map(|(_, found)| found.into_iter().map(|(_, value)| value).collect())
        .unwrap_or_default()
}

/// The key=value form, read as libpq reads it: `key = value` pairs separated by white
/// space, a value either bare (a backslash escapes the next character) or in single
/// quotes (`\'` and `\\` inside). The text without the pairs whose key `take` picks,
/// and those pairs; `None` when the text is not of that form.
fn split_key_values(text: &str, take: impl Fn(&str) -> bool) -> Option<(String, Vec<(String, String)>)> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let at = |index: usize| chars.get(index).map(|&(_, c)| c);
    let offset = |index: usize| chars.get(index).map_or(text.len(), |&(offset, _)| offset);
    let mut index = 0;
    let mut kept = String::new();
    let mut copied_to = 0;
    let mut found = Vec::new();
    // Where the last pair ended: a pair taken out takes the white space before it along.
    let mut last_end = 0;
    loop {
        while at(index).is_some_and(char::is_whitespace) {
            index += 1;
        }
        let Some(_) = at(index) else { break };
        let key_start = index;
        while at(index).is_some_and(|c| c != '=' && !c.is_whitespace()) {
            index += 1;
        }
        let key: String = chars[key_start..index].iter().map(|&(_, c)| c).collect();
        while at(index).is_some_and(char::is_whitespace) {
            index += 1;
        }
        if at(index) != Some('=') || key.is_empty() {
            return None;
        }
        index += 1;
        while at(index).is_some_and(char::is_whitespace) {
            index += 1;
        }
        let mut value = String::new();
        if at(index) == Some('\'') {
            index += 1;
            loop {
                match at(index)? {
                    '\'' => {
                        index += 1;
                        break;
                    }
                    '\\' => {
                        value.push(at(index + 1)?);
                        index += 2;
                    }
                    c => {
                        value.push(c);
                        index += 1;
                    }
                }
            }
        } else {
            while let Some(c) = at(index).filter(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.push(at(index + 1)?);
                    index += 2;
                } else {
                    value.push(c);
                    index += 1;
                }
            }
        }
        if take(&key) {
            kept.push_str(&text[copied_to..last_end.max(copied_to)]);
            copied_to = offset(index);
            found.push((key, value));
        }
        last_end = offset(index);
    }
    kept.push_str(&text[copied_to..]);
    Some((kept, found))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(url: &str) -> (String, TlsSettings) {
        split_tls_settings(url, "test").unwrap()
    }

    #[test]
    fn tls_settings_leave_a_url_and_the_rest_of_its_query_as_they_were() {
        let (rest, settings) =
            split("postgres://u:p%40ss@db:5432/app?application_name=x&sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem");
        assert_eq!(rest, "postgres://u:p%40ss@db:5432/app?application_name=x");
        assert_eq!(settings.mode, SslMode::VerifyFull);
        assert_eq!(settings.root_cert, Some(PathBuf::from("/etc/ca.pem")));
        let (rest, settings) = split("postgresql://db/app?sslmode=require");
        assert_eq!((rest.as_str(), settings.mode), ("postgresql://db/app", SslMode::Require));
        let (rest, settings) = split("postgres://u:p@db/app");
        assert_eq!((rest.as_str(), settings), ("postgres://u:p@db/app", TlsSettings::default()));
        // A `?` inside the credentials is the password's, as the postgres crate reads it.
        let (rest, settings) = split("postgres://u:a?sslmode=disable@db/app");
        assert_eq!(
            (rest.as_str(), settings.mode),
            ("postgres://u:a?sslmode=disable@db/app", SslMode::Prefer)
        );
        assert_eq!(split("postgres://db/app?sslmode=allow").1.mode, SslMode::Prefer);
    }

    #[test]
    fn tls_settings_leave_key_value_pairs_and_quoted_passwords_as_they_were() {
        let (rest, settings) = split(
            "host=db sslmode=verify-ca password='a b\\' sslmode=disable' sslrootcert = '/etc/my ca.pem'",
        );
        assert_eq!(rest, "host=db password='a b\\' sslmode=disable'");
        assert_eq!(settings.mode, SslMode::VerifyCa);
        assert_eq!(settings.root_cert, Some(PathBuf::from("/etc/my ca.pem")));
        let (rest, settings) = split("host=db user=me");
        assert_eq!((rest.as_str(), settings), ("host=db user=me", TlsSettings::default()));
        // Not of the form: handed on whole for the postgres crate to refuse.
        assert_eq!(split("host=db password='open").0, "host=db password='open");
        // The client certificate and key are taken out too.
        let (rest, settings) = split("host=db sslcert='/etc/my app.crt' user=me sslkey=/etc/app.key");
        assert_eq!(rest, "host=db user=me");
        assert_eq!(settings.client_cert, Some(PathBuf::from("/etc/my app.crt")));
        assert_eq!(settings.client_key, Some(PathBuf::from("/etc/app.key")));
    }

    #[test]
    fn an_unknown_sslmode_is_named_with_the_known_ones() {
        let error = split_tls_settings("postgres://db/app?sslmode=verify_full", "DATABASE_URL").unwrap_err();
        assert_eq!(error.exit_code(), 78);
        let message = error.to_string();
        assert!(
            message.contains("`sslmode`: \"verify_full\"") && message.contains("verify-full"),
            "{message}"
        );
    }

    #[test]
    fn an_unreadable_or_empty_root_certificate_file_is_a_configuration_error() {
        let folder = tempfile::tempdir().unwrap();
        let empty = folder.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        for path in [folder.path().join("missing.pem"), empty] {
            let settings = TlsSettings {
                mode: SslMode::VerifyFull,
                root_cert: Some(path.clone()),
                ..TlsSettings::default()
            };
            let error = settings.connector("DATABASE_URL").err().unwrap();
            assert_eq!(error.exit_code(), 78);
            assert!(error.to_string().contains(&path.display().to_string()), "{error}");
        }
        // With TLS off, as with libpq, the file is not read at all.
        let off = TlsSettings {
            mode: SslMode::Disable,
            root_cert: Some(folder.path().join("missing.pem")),
            ..TlsSettings::default()
        };
        assert!(off.connector("DATABASE_URL").is_ok());
    }
}
