//! SOPS decryption against files encrypted by the real sops CLI: every
//! format a kustomization meets (YAML and JSON manifests, dotenv, JSON,
//! YAML and binary generator files), `encrypted_regex`,
//! `unencrypted_suffix` and `mac_only_encrypted`, a wrong key, a tampered
//! file; then end to end under `kedge run`, where nothing decrypted may
//! reach the state, the log, `kedge diff` or `kedge build`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use kedge::postbuild::sops::{decrypt_file, Error, Format, Keys};
use kube::Api;

use crate::kustomization_run::{kustomization, Setup};
use crate::support::sops::{
    decrypt, decrypt_pgp, encrypt, encrypt_pgp, encrypt_with_rule, AgeKey, PgpKey,
};
use crate::support::{cluster, TestNamespace};

const SETTINGS_JSON: &str = "{\n  \"user\": \"admin\",\n  \"port\": 5432,\n  \"ratio\": 0.25,\n  \"tls\": true,\n  \"hosts\": [\"a\", \"b\"]\n}\n";
const VALUES_YAML: &str = "user: admin\npassword: hunter2-yaml\nport: 5432\nnote_unencrypted: left in clear\nnested:\n  list:\n  - one\n  - 2\n";
const CREDS_ENV: &str = "# database\nDB_USER=admin\nDB_PASSWORD=hunter2-env\nMULTI=a\\nb\n";
const BINARY: &[u8] = b"\x00\x01binary-hunter2\xff\n";

fn keys(key: &AgeKey) -> Keys {
    Keys::read(&key.file).expect("read age key")
}

fn parsed(bytes: &[u8]) -> serde_yaml::Value {
    serde_yaml::from_slice(bytes).expect("YAML or JSON")
}

#[test]
fn files_encrypted_by_sops_decrypt_as_sops_decrypts_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = AgeKey::fixture(dir.path(), "fleet");
    let keys = keys(&key);
    let cases: [(&str, &[u8], Format, &str); 7] = [
        ("creds.env", CREDS_ENV.as_bytes(), Format::Dotenv, ""),
        ("settings.json", SETTINGS_JSON.as_bytes(), Format::Json, ""),
        ("values.yaml", VALUES_YAML.as_bytes(), Format::Yaml, ""),
        (
            "values.yaml",
            VALUES_YAML.as_bytes(),
            Format::Yaml,
            "unencrypted_suffix: _unencrypted",
        ),
        (
            "values.yaml",
            VALUES_YAML.as_bytes(),
            Format::Yaml,
            "encrypted_regex: ^(password|list)$",
        ),
        (
            "values.yaml",
            VALUES_YAML.as_bytes(),
            Format::Yaml,
            "encrypted_regex: ^(password|list)$\nmac_only_encrypted: true",
        ),
        ("tls.bin", BINARY, Format::Binary, ""),
    ];
    for (name, plaintext, format, args) in cases {
        let encrypted = encrypt_with_rule(&key, name, plaintext, &[], args);
        if args.contains("mac_only_encrypted") {
            let text = String::from_utf8_lossy(&encrypted);
            assert!(text.contains("mac_only_encrypted: true"), "{text}");
        }
        let reference = decrypt(&key, name, &encrypted);
        let ours = decrypt_file(encrypted, format, &keys)
            .unwrap_or_else(|e| panic!("{name} {args:?}: {e}"));
        match format {
            // kedge writes these byte for byte as sops does.
            Format::Dotenv | Format::Binary => assert_eq!(ours, reference, "{name} {args:?}"),
            Format::Yaml | Format::Json => {
                assert_eq!(parsed(&ours), parsed(&reference), "{name} {args:?}")
            }
        }
    }
}

#[test]
fn a_secret_holding_whole_encrypted_files_gets_them_decrypted_in_its_keys_format() {
    use base64::Engine as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let key = AgeKey::fixture(dir.path(), "fleet");
    let keys = keys(&key);
    let yaml = encrypt(&key, "values.yaml", VALUES_YAML.as_bytes(), &[]);
    let env = encrypt(&key, "creds.env", CREDS_ENV.as_bytes(), &[]);
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let mut secret = serde_json::json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "files"},
        "data": {"values.yaml": b64(&yaml), "values.json": b64(&yaml), "creds.env": b64(&env), "plain": b64(b"x")}
    });
    assert!(kedge::postbuild::decrypt(&mut secret, None, None, &keys).expect("decrypt"));
    let data = |k: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(secret["data"][k].as_str().expect("string"))
            .expect("base64")
    };
    assert_eq!(
        parsed(&data("values.yaml")),
        parsed(&decrypt(&key, "values.yaml", &yaml))
    );
    let json: serde_json::Value =
        serde_json::from_slice(&data("values.json")).expect("written as JSON");
    assert_eq!(json["password"], "hunter2-yaml");
    assert_eq!(data("creds.env"), decrypt(&key, "creds.env", &env));
    assert_eq!(data("plain"), b"x");
}

#[test]
fn a_file_without_sops_metadata_is_left_as_it_is() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = keys(&AgeKey::fixture(dir.path(), "fleet"));
    let plain = CREDS_ENV.as_bytes().to_vec();
    assert_eq!(
        decrypt_file(plain.clone(), Format::Dotenv, &keys).expect("plain"),
        plain
    );
}

#[test]
fn a_wrong_key_and_a_tampered_value_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = AgeKey::fixture(dir.path(), "fleet");
    let other = AgeKey::fixture(dir.path(), "other");
    let encrypted = encrypt(
        &key,
        "values.yaml",
        VALUES_YAML.as_bytes(),
        &["--unencrypted-suffix", "_unencrypted"],
    );

    let wrong =
        decrypt_file(encrypted.clone(), Format::Yaml, &keys(&other)).expect_err("wrong key");
    assert!(matches!(wrong, Error::NoMatchingKey { .. }), "{wrong}");
    assert!(
        wrong.to_string().contains(&key.recipient),
        "names the recipients: {wrong}"
    );

    // A value in clear, covered by the MAC, changed by hand.
    let text = String::from_utf8(encrypted).expect("utf-8");
    let tampered = text.replace("left in clear", "changed by hand");
    assert_ne!(tampered, text);
    let refused =
        decrypt_file(tampered.into_bytes(), Format::Yaml, &keys(&key)).expect_err("tampered");
    assert!(matches!(refused, Error::Mac), "{refused}");
}

#[test]
fn files_encrypted_for_an_openpgp_key_decrypt_as_sops_decrypts_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = PgpKey::fixture(dir.path());
    let keys = Keys::load(None, Some(&key.file)).expect("read the OpenPGP secret key");
    let cases: [(&str, &[u8], Format); 4] = [
        ("creds.env", CREDS_ENV.as_bytes(), Format::Dotenv),
        ("settings.json", SETTINGS_JSON.as_bytes(), Format::Json),
        ("values.yaml", VALUES_YAML.as_bytes(), Format::Yaml),
        ("tls.bin", BINARY, Format::Binary),
    ];
    for (name, plaintext, format) in cases {
        let encrypted = encrypt_pgp(&key, name, plaintext, &[]);
        let text = String::from_utf8_lossy(&encrypted).into_owned();
        assert!(text.contains("BEGIN PGP MESSAGE"), "{name}: {text}");
        assert!(!text.contains("age1"), "{name}: OpenPGP only: {text}");
        let reference = decrypt_pgp(&key, name, &encrypted);
        let ours = decrypt_file(encrypted, format, &keys).unwrap_or_else(|e| panic!("{name}: {e}"));
        match format {
            Format::Dotenv | Format::Binary => assert_eq!(ours, reference, "{name}"),
            Format::Yaml | Format::Json => assert_eq!(parsed(&ours), parsed(&reference), "{name}"),
        }
    }
}

#[test]
fn an_openpgp_file_without_its_secret_key_names_the_fingerprint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = PgpKey::fixture(dir.path());
    let age = AgeKey::fixture(dir.path(), "fleet");
    let encrypted = encrypt_pgp(&key, "values.yaml", VALUES_YAML.as_bytes(), &[]);
    let refused = decrypt_file(encrypted, Format::Yaml, &keys(&age)).expect_err("no pgp key");
    assert!(matches!(refused, Error::NoMatchingKey { .. }), "{refused}");
    assert!(refused.to_string().contains(&key.fingerprint), "{refused}");
    let not_keys = dir.path().join("not-keys.asc");
    std::fs::write(&not_keys, "not a key\n").expect("write");
    let unreadable = Keys::load(None, Some(&not_keys)).expect_err("not keys");
    assert!(
        unreadable.to_string().contains("not-keys.asc"),
        "{unreadable}"
    );
}

/// Secret `name` of `namespace`, its data as text.
async fn secret_data(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Option<BTreeMap<String, Vec<u8>>> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = api.get_opt(name).await.expect("get secret")?;
    Some(
        secret
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect(),
    )
}

const SECRET_YAML: &str = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  labels:\n    tier: backend\ntype: Opaque\nstringData:\n  password: hunter2-manifest\n  port: \"5432\"\n";

#[tokio::test]
async fn encrypted_manifests_and_generator_files_are_applied_decrypted_and_never_shown() {
    let client = cluster().client().await;
    let ns = TestNamespace::new(&client, "sops-run").await;
    let keydir = tempfile::tempdir().expect("tempdir");
    let key = AgeKey::fixture(keydir.path(), "fleet");
    let decryption = format!(
        "decryption = {{ provider = \"sops\", age_key_file = {:?} }}\n",
        key.file.display().to_string()
    );
    let setup = Setup::new(&kustomization("sops-run", "./apps", &ns.name, &decryption));
    let manifest = encrypt(
        &key,
        "secret.yaml",
        SECRET_YAML.as_bytes(),
        &["--encrypted-regex", "^(data|stringData)$"],
    );
    let env = encrypt(&key, "creds.env", CREDS_ENV.as_bytes(), &[]);
    let json = encrypt(&key, "settings.json", SETTINGS_JSON.as_bytes(), &[]);
    let binary = encrypt(&key, "tls.bin", BINARY, &[]);
    let utf8 = |b: &[u8]| String::from_utf8(b.to_vec()).expect("encrypted files are text");
    let kustomization_yaml = "resources:\n- secret.yaml\nsecretGenerator:\n- name: creds\n  envs:\n  - creds.env\n  files:\n  - settings.json\n  - tls.bin\n  options:\n    disableNameSuffixHash: true\n";
    let first = setup.repo.commit(
        &[
            ("apps/kustomization.yaml", kustomization_yaml),
            ("apps/secret.yaml", &utf8(&manifest)),
            ("apps/creds.env", &utf8(&env)),
            ("apps/settings.json", &utf8(&json)),
            ("apps/tls.bin", &utf8(&binary)),
        ],
        "encrypted secrets",
    );
    let _daemon = setup.start();
    setup.wait_applied("sops-run", &first);

    let db = secret_data(&client, &ns.name, "db")
        .await
        .expect("Secret db applied");
    assert_eq!(db["password"], b"hunter2-manifest");
    assert_eq!(db["port"], b"5432");
    let creds = secret_data(&client, &ns.name, "creds")
        .await
        .expect("Secret creds applied");
    assert_eq!(creds["DB_PASSWORD"], b"hunter2-env");
    assert_eq!(
        creds["MULTI"], b"a\\nb",
        "as kustomize reads the env file sops writes"
    );
    assert_eq!(creds["tls.bin"], decrypt(&key, "tls.bin", &binary));
    assert_eq!(
        parsed(&creds["settings.json"]),
        parsed(&decrypt(&key, "settings.json", &json))
    );
    let api: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
    let live = serde_json::to_string(&api.get("db").await.expect("db")).expect("json");
    assert!(
        !live.contains("\"sops\""),
        "the sops metadata is removed: {live}"
    );

    // Nothing decrypted in kedge diff, kedge build, the state or the log.
    let diff = setup.cli(&["diff", "sops-run"]);
    let build = setup.cli(&["build", "sops-run"]);
    assert!(
        build.status.success(),
        "{}",
        String::from_utf8_lossy(&build.stderr)
    );
    let built = String::from_utf8_lossy(&build.stdout).into_owned();
    assert!(
        built.contains("**SOPS**") && built.contains("name: db"),
        "{built}"
    );
    let mut state = Vec::new();
    for entry in std::fs::read_dir(&setup.state_dir).expect("state dir") {
        let path = entry.expect("entry").path();
        if path.is_file() {
            state.extend(std::fs::read(&path).expect("read state file"));
        }
    }
    let shown = [
        String::from_utf8_lossy(&diff.stdout).into_owned(),
        String::from_utf8_lossy(&diff.stderr).into_owned(),
        built,
        setup.log_text(),
        String::from_utf8_lossy(&state).into_owned(),
    ];
    for secret in ["hunter2-manifest", "hunter2-env", "binary-hunter2", "admin"] {
        for (what, text) in ["diff", "diff stderr", "build", "log", "state"]
            .iter()
            .zip(&shown)
        {
            assert!(!text.contains(secret), "{secret:?} shown in {what}");
        }
    }

    // A value in clear changed by hand: refused, naming the file and the object.
    let tampered = utf8(&manifest).replace("tier: backend", "tier: frontend");
    let second = setup
        .repo
        .commit(&[("apps/secret.yaml", &tampered)], "tampered");
    let failed = setup.wait_for("sops-run", "the tampered revision refused", |s| {
        !s.ready && s.last_attempted_revision.as_deref() == Some(&format!("main@sha1:{second}"))
    });
    assert_eq!(failed.reason, "BuildFailed");
    for part in ["apps/secret.yaml", "Secret/", "db", "MAC mismatch"] {
        assert!(
            failed.message.contains(part),
            "{part:?} in {}",
            failed.message
        );
    }
    assert_eq!(
        failed.last_applied_revision,
        Some(format!("main@sha1:{first}"))
    );
}

/// How the manifests are encrypted: only the Secret's data.
const MANIFEST_RULE: &[&str] = &["--encrypted-regex", "^(data|stringData)$"];

/// A setup whose kustomization `name` decrypts with `key_field = key_file`,
/// and the commit of `manifest` as `apps/secret.yaml`.
fn with_encrypted_secret(
    name: &str,
    namespace: &str,
    key_field: &str,
    key_file: &std::path::Path,
    manifest: Vec<u8>,
) -> (Setup, String) {
    let decryption = format!(
        "decryption = {{ provider = \"sops\", {key_field} = {:?} }}\n",
        key_file.display().to_string()
    );
    let setup = Setup::new(&kustomization(name, "./apps", namespace, &decryption));
    let manifest = String::from_utf8(manifest).expect("utf-8");
    let first = setup
        .repo
        .commit(&[("apps/secret.yaml", &manifest)], "an encrypted Secret");
    (setup, first)
}

#[tokio::test]
async fn a_kustomization_with_the_wrong_key_fails_and_names_the_recipients() {
    let client = cluster().client().await;
    let ns = TestNamespace::new(&client, "sops-wrong").await;
    let keydir = tempfile::tempdir().expect("tempdir");
    let key = AgeKey::fixture(keydir.path(), "fleet");
    let other = AgeKey::fixture(keydir.path(), "other");
    let manifest = encrypt(&key, "secret.yaml", SECRET_YAML.as_bytes(), MANIFEST_RULE);
    let (setup, first) = with_encrypted_secret(
        "sops-wrong",
        &ns.name,
        "age_key_file",
        &other.file,
        manifest,
    );
    let _daemon = setup.start();
    let failed = setup.wait_for("sops-wrong", "the build refused", |s| {
        !s.ready && s.last_attempted_revision.as_deref() == Some(&format!("main@sha1:{first}"))
    });
    assert_eq!(failed.reason, "BuildFailed");
    assert!(
        failed.message.contains(&key.recipient) && failed.message.contains("Secret/"),
        "{}",
        failed.message
    );
    assert!(
        secret_data(&client, &ns.name, "db").await.is_none(),
        "nothing applied"
    );
}

#[tokio::test]
async fn a_manifest_encrypted_for_an_openpgp_key_is_applied_decrypted_under_kedge_run() {
    let client = cluster().client().await;
    let ns = TestNamespace::new(&client, "sops-pgp").await;
    let keydir = tempfile::tempdir().expect("tempdir");
    let key = PgpKey::fixture(keydir.path());
    let manifest = encrypt_pgp(&key, "secret.yaml", SECRET_YAML.as_bytes(), MANIFEST_RULE);
    let (setup, first) = with_encrypted_secret(
        "sops-pgp",
        &ns.name,
        "pgp_keyring_file",
        &key.file,
        manifest,
    );
    let _daemon = setup.start();
    setup.wait_applied("sops-pgp", &first);
    let db = secret_data(&client, &ns.name, "db")
        .await
        .expect("Secret db applied");
    assert_eq!(db["password"], b"hunter2-manifest");
}
