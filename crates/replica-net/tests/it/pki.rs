//! Certificates made by the tests: a CA, a server certificate for 127.0.0.1, a client one.

pub(crate) struct Pki {
    pub(crate) dir: std::path::PathBuf,
}

impl Pki {
    pub(crate) fn path(&self, name: &str) -> String {
        self.dir.join(name).to_str().unwrap().to_owned()
    }
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, all made here.
pub(crate) fn make_pki(tag: &str) -> Pki {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
        SanType,
    };
    let dir = test_support::temp_dir(tag);
    let write = |name: &str, text: String| std::fs::write(dir.join(name), text).unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    // distinct names: a leaf whose subject equals its issuer looks self-signed to OpenSSL
    ca.distinguished_name
        .push(DnType::CommonName, format!("replicator test CA {tag}"));
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    write("ca.pem", ca_cert.pem());
    let issuer = Issuer::new(ca, ca_key);
    let mut server = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    server
        .subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    server
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let server_key = KeyPair::generate().unwrap();
    write(
        "server.pem",
        server.signed_by(&server_key, &issuer).unwrap().pem(),
    );
    write("server.key", server_key.serialize_pem());
    let mut client = CertificateParams::new(vec!["replica".to_owned()]).unwrap();
    client
        .distinguished_name
        .push(DnType::CommonName, "replica");
    let client_key = KeyPair::generate().unwrap();
    write(
        "client.pem",
        client.signed_by(&client_key, &issuer).unwrap().pem(),
    );
    write("client.key", client_key.serialize_pem());
    Pki { dir }
}
