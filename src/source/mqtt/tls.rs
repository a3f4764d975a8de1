//! TLS for the MQTT channel: the transport from the `[tls]` files (checked when read), and what
//! a failed connection says about TLS problems.

use rumqttc::{ConnectionError, TlsConfiguration, Transport};

use crate::config::MqttTlsConfig;
use crate::error::SourceError;

/// The TLS transport of `[tls]`: the CA file and, when both are given, the client certificate
/// and key. A file without a certificate (or key) is a configuration error, said now rather
/// than on every connection attempt. `err` makes the source's error.
pub fn transport(t: &MqttTlsConfig, err: impl Fn(String) -> SourceError) -> Result<Transport, SourceError> {
    use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
    let read = |p: &std::path::Path| std::fs::read(p).map_err(|e| err(format!("reading {}: {e}", p.display())));
    let certs = |key: &str, p: &std::path::Path| {
        let pem = read(p)?;
        match CertificateDer::pem_slice_iter(&pem).collect::<Result<Vec<_>, _>>() {
            Ok(c) if !c.is_empty() => Ok(pem),
            Ok(_) => Err(err(format!("`tls.{key}` {}: no PEM certificate in it", p.display()))),
            Err(e) => Err(err(format!("`tls.{key}` {}: {e}", p.display()))),
        }
    };
    let ca = certs("ca_file", &t.ca_file)?;
    let client_auth = match (&t.client_cert_file, &t.client_key_file) {
        (Some(c), Some(k)) => {
            let key = read(k)?;
            if let Err(e) = PrivateKeyDer::from_pem_slice(&key) {
                return Err(err(format!("`tls.client_key_file` {}: no PEM private key (PKCS#8, PKCS#1 or SEC1) in it: {e}", k.display())));
            }
            Some((certs("client_cert_file", c)?, key))
        }
        _ => None,
    };
    Ok(Transport::tls_with_config(TlsConfiguration::Simple { ca, alpn: None, client_auth }))
}

/// The TLS error under a connection error, if any (rustls errors reach rumqttc wrapped in an
/// `io::Error`, whose `source()` skips them, so each level is unwrapped by hand).
fn rustls_error(e: &ConnectionError) -> Option<&rustls::Error> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        if let Some(r) = err.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()).and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
            return Some(r);
        }
        cur = err.source();
    }
    None
}

/// Why a connection attempt to `host` failed, for the log and the readiness check: TLS
/// failures say what is wrong and which setting to look at, then rumqttc's own text.
pub fn connection_failure(e: &ConnectionError, host: &str) -> String {
    use rustls::{AlertDescription as A, CertificateError as C, Error as R};
    let what = match rustls_error(e) {
        Some(R::InvalidCertificate(C::UnknownIssuer)) => "TLS: unknown issuer: the broker's certificate is not signed by a CA in `tls.ca_file`".to_string(),
        Some(R::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. })) => format!("TLS: hostname mismatch: the broker's certificate is not valid for `{host}` (the host in `url`)"),
        Some(R::InvalidCertificate(C::Expired | C::ExpiredContext { .. })) => "TLS: certificate expired: the broker's certificate has expired".to_string(),
        Some(R::InvalidCertificate(C::NotValidYet | C::NotValidYetContext { .. })) => "TLS: the broker's certificate is not valid yet (check the clocks)".to_string(),
        Some(R::InvalidCertificate(_)) => "TLS: the broker's certificate was rejected".to_string(),
        Some(R::AlertReceived(A::CertificateExpired)) => "TLS: certificate expired: the broker rejected the client certificate (`tls.client_cert_file`) as expired".to_string(),
        Some(R::AlertReceived(A::CertificateRequired | A::NoCertificate)) => "TLS: the broker requires a client certificate (`tls.client_cert_file`, `tls.client_key_file`)".to_string(),
        Some(R::AlertReceived(a @ (A::BadCertificate | A::UnsupportedCertificate | A::CertificateRevoked | A::CertificateUnknown | A::UnknownCA | A::AccessDenied))) => {
            format!("TLS: the broker rejected the client certificate (`tls.client_cert_file`): {a:?}")
        }
        Some(R::AlertReceived(a)) => format!("TLS: the broker ended the handshake: {a:?}"),
        Some(_) => "TLS: handshake failed".to_string(),
        None => return e.to_string(),
    };
    format!("{what} ({e})")
}
