//! `mqtts://`: the rustls client configuration of a bridge, from PEM files (ring as the crypto
//! provider, passed explicitly: no process-wide default is installed).

use std::sync::Arc;

use rustls::ClientConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use serde::{Deserialize, Serialize};

/// TLS for an `mqtts://` broker.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TlsSpec {
    /// CA certificates (PEM) that sign the MQTT broker's certificate; the system's trust store
    /// when not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// The bridge's certificate chain (PEM), for brokers that authenticate clients by
    /// certificate (mutual TLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<String>,
    /// The private key (PEM) of `cert_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<String>,
}

/// A TLS setting that does not work; `field` names it within `tls`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tls.{field}: {message}")]
pub struct InvalidTls {
    pub field: &'static str,
    pub message: String,
}

fn invalid(field: &'static str, message: impl std::fmt::Display) -> InvalidTls {
    InvalidTls { field, message: message.to_string() }
}

fn certificates(field: &'static str, path: &str) -> Result<Vec<CertificateDer<'static>>, InvalidTls> {
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|e| invalid(field, format!("{path}: {e}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(field, format!("{path}: {e}")))?;
    if certificates.is_empty() {
        return Err(invalid(field, format!("{path}: no PEM certificate in it")));
    }
    Ok(certificates)
}

/// The client configuration `tls` describes: the broker's certificate checked against `ca_file`
/// (else the system's trust store), and a client certificate when one is given.
pub(super) fn client_config(tls: &TlsSpec) -> Result<Arc<ClientConfig>, InvalidTls> {
    match (&tls.cert_file, &tls.key_file) {
        (Some(_), None) => return Err(invalid("key_file", "a client certificate needs its key_file")),
        (None, Some(_)) => return Err(invalid("cert_file", "a client key needs its cert_file")),
        _ => {}
    }
    let mut roots = rustls::RootCertStore::empty();
    match &tls.ca_file {
        Some(path) => {
            for certificate in certificates("ca_file", path)? {
                roots.add(certificate).map_err(|e| invalid("ca_file", format!("{path}: {e}")))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                let errors: Vec<String> = found.errors.iter().map(ToString::to_string).collect();
                return Err(invalid(
                    "ca_file",
                    format!("no ca_file given and no system trust store found ({})", errors.join("; ")),
                ));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid("ca_file", e))?
        .with_root_certificates(roots);
    let config = match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => {
            let chain = certificates("cert_file", cert)?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| invalid("key_file", format!("{key}: {e}")))?;
            builder.with_client_auth_cert(chain, key).map_err(|e| invalid("key_file", e))?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}
