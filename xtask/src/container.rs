//! `cargo xtask container`: `dist/container`'s recipe run as written, without a Docker
//! engine (CI machines have none). What an image and compose would give each container is
//! built from the two files themselves, with Linux namespaces:
//!
//! - the image: the Dockerfile's build `RUN` at the repository root (its `WORKDIR /src`,
//!   `COPY . .`), the binaries its `COPY --from=build` names in `/usr/local/bin`, the user its
//!   `useradd` creates, the directories its `install -d` lines make, its `ENV`, `USER`,
//!   `ENTRYPOINT` and `CMD`;
//! - compose: each service's `entrypoint`, `command`, `environment`, `volumes` (named and
//!   bind, `:ro`), `secrets` (under `/run/secrets`), `read_only`, `cap_drop: [ALL]`,
//!   `no-new-privileges`, `depends_on`, and one network where service names resolve.
//!
//! Every container is a process in its own mount namespace (`unshare --mount`) over the host's
//! root made read-only, with overlays for `/etc` and tmpfs for `/var/lib`, `/run` and `/tmp`,
//! and runs as the image's user with no capabilities (`setpriv`). All of them share one
//! network namespace (`unshare --net`) with this check, so the recipe's fixed ports are free.
//! The steps are the ones the compose file's header lists, in order; the check then
//! authenticates an app through the relay container (has-client), has a challenge signed and
//! a vote broadcast to a `dev-node` standing in for Hive, and stops both containers with
//! SIGTERM as `docker compose down` does.
//!
//! Needs root (mount namespaces), `unshare`/`setpriv` (util-linux) and `ip` (iproute2).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use has_crypto::{KeyRole, PrivateKey};
use serde_json::Value;

use crate::e2e::Proc;
use crate::js;
use crate::relay::{rand_hex, scratch};

/// What the Dockerfile's final image holds and runs.
#[derive(Debug)]
struct Image {
    build: String,
    binaries: Vec<PathBuf>,
    uid: u32,
    /// `install -d` directories: path, mode, owned by the image's user.
    dirs: Vec<(String, String, bool)>,
    env: Vec<(String, String)>,
    volume: String,
    entrypoint: Vec<String>,
    cmd: Vec<String>,
}

fn json_list(text: &str) -> Result<Vec<String>> {
    serde_json::from_str(text.trim()).with_context(|| format!("not a JSON list: {text}"))
}

impl Image {
    fn parse(dockerfile: &str, root: &Path) -> Result<Image> {
        let mut image = Image {
            build: String::new(),
            binaries: vec![],
            uid: 0,
            dirs: vec![],
            env: vec![],
            volume: String::new(),
            entrypoint: vec![],
            cmd: vec![],
        };
        // Continuation lines joined: one instruction per line.
        let joined = dockerfile.replace("\\\n", " ");
        for line in joined.lines().map(str::trim) {
            let (instr, rest) = line.split_once(' ').unwrap_or((line, ""));
            match instr {
                "RUN" if rest.starts_with("cargo build") => image.build = rest.to_owned(),
                "RUN" => {
                    for part in rest.split("&&").map(str::trim) {
                        let words: Vec<&str> = part.split_whitespace().collect();
                        if words.first() == Some(&"useradd") {
                            let at = words
                                .iter()
                                .position(|w| *w == "--uid")
                                .context("useradd --uid")?;
                            image.uid = words[at + 1].parse()?;
                        }
                        if words.starts_with(&["install", "-d"]) {
                            let mode = words.iter().position(|w| *w == "-m").map(|i| words[i + 1]);
                            image.dirs.push((
                                words.last().context("install -d path")?.to_string(),
                                mode.unwrap_or("0755").to_owned(),
                                words.contains(&"-o"),
                            ));
                        }
                    }
                }
                "COPY" if rest.starts_with("--from=build") => {
                    let words: Vec<&str> = rest.split_whitespace().skip(1).collect();
                    let (dest, srcs) = words.split_last().context("COPY destination")?;
                    if *dest != "/usr/local/bin/" {
                        bail!("COPY --from=build to {dest}: this check maps /usr/local/bin only");
                    }
                    for s in srcs {
                        let rel = s
                            .strip_prefix("/src/")
                            .context("COPY source outside /src")?;
                        image.binaries.push(root.join(rel));
                    }
                }
                "ENV" => {
                    let (k, v) = rest.split_once('=').context("ENV K=V")?;
                    image.env.push((k.to_owned(), v.to_owned()));
                }
                "VOLUME" => image.volume = json_list(rest)?.join(""),
                "ENTRYPOINT" => image.entrypoint = json_list(rest)?,
                "CMD" => image.cmd = json_list(rest)?,
                _ => {}
            }
        }
        if image.build.is_empty()
            || image.binaries.is_empty()
            || image.uid == 0
            || image.entrypoint.is_empty()
        {
            bail!(
                "the Dockerfile lacks a cargo build RUN, a COPY --from=build, a useradd --uid or an ENTRYPOINT: {image:?}"
            );
        }
        Ok(image)
    }
}

/// One compose service, as far as this recipe uses compose.
#[derive(Debug, Default)]
struct Service {
    entrypoint: Option<Vec<String>>,
    command: Option<Vec<String>>,
    environment: Vec<(String, String)>,
    volumes: Vec<String>,
    secrets: Vec<String>,
    depends_on: Vec<String>,
    read_only: bool,
    cap_drop_all: bool,
    no_new_privileges: bool,
}

/// The compose file: services, and the secrets' files. A small reader for the block style
/// the file uses (two-space indents, flow lists); a key it does not know fails the check,
/// so the recipe cannot grow a setting this check silently ignores.
fn parse_compose(text: &str) -> Result<(BTreeMap<String, Service>, BTreeMap<String, String>)> {
    let flow = |v: &str| -> Vec<String> {
        v.trim()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .split(',')
            .map(|s| s.trim().trim_matches('"').to_owned())
            .filter(|s| !s.is_empty())
            .collect()
    };
    let mut services: BTreeMap<String, Service> = BTreeMap::new();
    let mut secrets = BTreeMap::new();
    let (mut top, mut name, mut key) = (String::new(), String::new(), String::new());
    for line in text.lines() {
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let l = line.trim();
        match indent {
            0 => top = l.trim_end_matches(':').to_owned(),
            2 => {
                name = l.trim_end_matches(':').to_owned();
                if top == "services" {
                    services.insert(name.clone(), Service::default());
                }
            }
            4 if top == "services" => {
                let (k, v) = l.split_once(':').context("key: value")?;
                key = k.to_owned();
                let (v, s) = (v.trim(), services.get_mut(&name).context("service")?);
                match k {
                    "entrypoint" => s.entrypoint = Some(json_list(v)?),
                    "command" => s.command = Some(json_list(v)?),
                    "depends_on" => s.depends_on = flow(v),
                    "read_only" => s.read_only = v == "true",
                    "cap_drop" => s.cap_drop_all = flow(v) == ["ALL"],
                    "security_opt" => {
                        s.no_new_privileges = flow(v).iter().any(|o| o == "no-new-privileges:true")
                    }
                    // What Docker does with these has no bearing here: the image is this
                    // check's, the ports are reached in the shared network, restarts are not
                    // exercised.
                    "image" | "build" | "ports" | "restart" | "environment" | "volumes"
                    | "secrets" => {}
                    other => bail!("compose.yaml: service key {other} is not known to this check"),
                }
            }
            4 if top == "secrets" && l.starts_with("file:") => {
                secrets.insert(
                    name.clone(),
                    l.trim_start_matches("file:").trim().to_owned(),
                );
            }
            6 if top == "services" => {
                let s = services.get_mut(&name).context("service")?;
                match key.as_str() {
                    "environment" => {
                        let (k, v) = l.split_once(':').context("environment K: V")?;
                        s.environment
                            .push((k.trim().to_owned(), v.trim().to_owned()));
                    }
                    "volumes" => s
                        .volumes
                        .push(l.trim_start_matches("- ").trim_matches('"').to_owned()),
                    "secrets" => s.secrets.push(l.trim_start_matches("- ").to_owned()),
                    _ => {} // build's context/dockerfile, ports
                }
            }
            _ => {}
        }
    }
    Ok((services, secrets))
}

/// The shell commands of the compose file's header, in order (`#   ` lines, the prose after
/// "then" skipped).
fn header_steps(compose: &str) -> Vec<String> {
    compose
        .lines()
        .take_while(|l| l.starts_with('#'))
        .filter_map(|l| l.strip_prefix("#   "))
        .filter(|l| !l.starts_with(' ') && !l.starts_with("then"))
        .map(|l| l.split("   #").next().unwrap_or(l).trim().to_owned())
        .collect()
}

/// Everything a container needs from this check.
struct World {
    image: Image,
    services: BTreeMap<String, Service>,
    secrets: BTreeMap<String, String>,
    /// The directory the header's commands run in (compose.yaml's own directory).
    project: PathBuf,
    /// /usr/local/bin of the image.
    bin: PathBuf,
    volumes: PathBuf,
    scratch: PathBuf,
}

impl World {
    /// A command that runs `args` (entrypoint and arguments) as a container of `service`
    /// (None: `docker run` of the image alone).
    fn container(&self, service: Option<&str>, args: &[String]) -> Result<Command> {
        let none = Service::default();
        let svc = match service {
            Some(s) => self
                .services
                .get(s)
                .with_context(|| format!("no service {s}"))?,
            None => &none,
        };
        let n = std::fs::read_dir(&self.scratch)?.count();
        let tmp = self.scratch.join(format!("c{n}"));
        std::fs::create_dir_all(&tmp)?;
        let q = |p: &Path| shell_quote(&p.to_string_lossy());
        let uid = self.image.uid;
        let mut s = String::from("set -eu\n");
        // /etc: the host's under an overlay (the image's user, and the service names).
        s += &format!("mount -t tmpfs tmpfs {t}\nmkdir {t}/u {t}/w\n", t = q(&tmp));
        s += &format!(
            "mount -t overlay overlay -o lowerdir=/etc,upperdir={t}/u,workdir={t}/w /etc\n",
            t = q(&tmp)
        );
        let names: Vec<&str> = self.services.keys().map(String::as_str).collect();
        s += &format!("echo '127.0.0.1 {}' >> /etc/hosts\n", names.join(" "));
        s += &format!(
            "echo 'pksa:x:{uid}:{uid}::{}:/usr/sbin/nologin' >> /etc/passwd\necho 'pksa:x:{uid}:' >> /etc/group\n",
            self.image.volume
        );
        s += "mount -t tmpfs -o mode=0755 tmpfs /var/lib\nmount -t tmpfs -o mode=0755 tmpfs /run\n";
        for (path, mode, owned) in &self.image.dirs {
            let own = if *owned {
                format!(" -o {uid} -g {uid}")
            } else {
                String::new()
            };
            s += &format!("install -d -m {mode}{own} {}\n", shell_quote(path));
        }
        // Volumes: named ones live in this check's directory, as Docker keeps them; the
        // image's VOLUME gets an anonymous one when the service names none.
        let mut mounts: Vec<(PathBuf, String, bool)> = vec![];
        for v in &svc.volumes {
            let parts: Vec<&str> = v.split(':').collect();
            let (src, dst, ro) = (parts[0], parts[1], parts.get(2) == Some(&"ro"));
            let src = if src.starts_with('.') || src.starts_with('/') {
                self.project.join(src)
            } else {
                self.volume(src)?
            };
            mounts.push((src, dst.to_owned(), ro));
        }
        if !mounts.iter().any(|(_, d, _)| *d == self.image.volume) {
            mounts.push((
                self.volume(&format!("anonymous-{n}"))?,
                self.image.volume.clone(),
                false,
            ));
        }
        for secret in &svc.secrets {
            let file = self
                .secrets
                .get(secret)
                .with_context(|| format!("no secret {secret}"))?;
            s += "install -d -m 0755 /run/secrets\n";
            mounts.push((
                self.project.join(file),
                format!("/run/secrets/{secret}"),
                true,
            ));
        }
        mounts.push((self.bin.clone(), "/usr/local/bin".into(), true));
        for (src, dst, ro) in &mounts {
            let d = shell_quote(dst);
            if src.is_dir() {
                s += &format!("mkdir -p {d}\n");
            } else {
                s += &format!("touch {d}\n");
            }
            s += &format!("mount --bind {} {d}\n", q(src));
            if *ro {
                s += &format!("mount -o remount,bind,ro {d}\n");
            }
        }
        // The root: never the host's to write. read_only: nothing but the volumes is
        // writable; otherwise /tmp is a throwaway (Docker's writable layer, as far as this
        // recipe writes).
        s += "mount -o remount,bind,ro /\n";
        if svc.read_only {
            s += "mount -o remount,ro /etc\nmount -o remount,ro /var/lib\nmount -o remount,ro /run\nmount -t tmpfs -o ro tmpfs /tmp\n";
        } else {
            s += "mount -t tmpfs tmpfs /tmp\n";
        }
        s += "cd /\n";
        let mut env = vec![
            (
                "PATH".to_owned(),
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned(),
            ),
            ("HOME".to_owned(), self.image.volume.clone()),
        ];
        env.extend(self.image.env.iter().cloned());
        env.extend(svc.environment.iter().cloned());
        let mut exec = format!("exec setpriv --reuid {uid} --regid {uid} --clear-groups");
        if svc.no_new_privileges {
            exec += " --no-new-privs";
        }
        if svc.cap_drop_all || service.is_none() {
            // An unprivileged USER has no capabilities in Docker either.
            exec += " --inh-caps=-all --bounding-set=-all";
        }
        exec += " env -i";
        for (k, v) in &env {
            exec += &format!(" {}", shell_quote(&format!("{k}={v}")));
        }
        s += &exec;
        s += " \"$@\"\n";
        let mut cmd = Command::new("unshare");
        cmd.args([
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            &s,
            "container",
        ]);
        let entrypoint = svc
            .entrypoint
            .clone()
            .unwrap_or_else(|| self.image.entrypoint.clone());
        cmd.args(entrypoint).args(args);
        Ok(cmd)
    }

    fn volume(&self, name: &str) -> Result<PathBuf> {
        let dir = self.volumes.join(name);
        if !dir.exists() {
            // As Docker fills a new volume: the image's directory, its owner and mode.
            std::fs::create_dir_all(&dir)?;
            let (_, mode, owned) = self
                .image
                .dirs
                .iter()
                .find(|(p, ..)| *p == self.image.volume)
                .context("the image makes no directory for its VOLUME")?;
            std::fs::set_permissions(
                &dir,
                std::fs::Permissions::from_mode(u32::from_str_radix(mode, 8)?),
            )?;
            if *owned {
                std::os::unix::fs::chown(&dir, Some(self.image.uid), Some(self.image.uid))?;
            }
        }
        Ok(dir)
    }

    /// `args` after the image or service name of a header line, and its redirections.
    fn run_step(&self, service: Option<&str>, line: &str, stdin: Option<&[u8]>) -> Result<String> {
        let (cmd_part, input) = match line.split_once(" < ") {
            Some((c, f)) => (c, Some(f.trim())),
            None => (line, None),
        };
        let (cmd_part, output) = match cmd_part.split_once(" > ") {
            Some((c, f)) => (c, Some(f.trim())),
            None => (cmd_part, None),
        };
        let args: Vec<String> = cmd_part.split_whitespace().map(str::to_owned).collect();
        let mut c = self.container(service, &args)?;
        c.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        eprintln!("xtask$ (container {}) {line}", service.unwrap_or("image"));
        let mut child = c.spawn().context("unshare (util-linux)")?;
        let mut feed = stdin.map(<[u8]>::to_vec).unwrap_or_default();
        if let Some(f) = input {
            feed = std::fs::read(self.project.join(f)).with_context(|| format!("reading {f}"))?;
        }
        child.stdin.take().context("stdin")?.write_all(&feed)?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "{line}: {}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        if let Some(f) = output {
            std::fs::write(self.project.join(f), &out.stdout)?;
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn wait_for(what: &str, child: &mut Child, mut ready: impl FnMut() -> bool) -> Result<()> {
    let t0 = Instant::now();
    while !ready() {
        if let Some(status) = child.try_wait()? {
            bail!("{what} exited before it was ready: {status}");
        }
        if t0.elapsed() > Duration::from_secs(60) {
            bail!("{what} not ready after 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Whether this machine lets the check make its namespaces (root, and a kernel and container
/// runtime that allow `unshare`): None when it does, else what refused.
pub fn unavailable() -> Option<String> {
    match Command::new("unshare")
        .args(["--net", "--mount", "--", "true"])
        .stderr(Stdio::piped())
        .output()
    {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(String::from_utf8_lossy(&o.stderr).trim().to_owned()),
        Err(e) => Some(format!("unshare: {e}")),
    }
}

/// `cargo xtask container`.
pub fn check() -> Result<()> {
    let root = js::root();
    let dockerfile = std::fs::read_to_string(root.join("dist/container/Dockerfile"))?;
    let image = Image::parse(&dockerfile, &root)?;
    if std::env::var_os("XTASK_CONTAINER_NETNS").is_none() {
        // The image's build, verbatim, where `COPY . .` put the repository; and the app's
        // client. Then the rest inside a network namespace of its own (no network needed).
        crate::sh("sh", &["-c", &image.build], &[])?;
        crate::sh("cargo", &["build", "-p", "has-client"], &[])?;
        let status = Command::new("unshare")
            .args(["--net", "--"])
            .arg(std::env::current_exe()?)
            .arg("container")
            .env("XTASK_CONTAINER_NETNS", "1")
            .status()
            .context("unshare --net (util-linux; needs root)")?;
        if !status.success() {
            bail!("the container check failed ({status})");
        }
        return Ok(());
    }
    crate::sh("ip", &["link", "set", "lo", "up"], &[])?;
    let dir = scratch("container-check")?;
    // A Hive node (the dry-run one) for the relay's HIVE_API and the service's hive_api, and
    // the account's keys.
    let account = "alice";
    let password = format!("pw-{}", rand_hex());
    let release = root.join("target").join("release");
    let mut node = Command::new(release.join("pksa-service"))
        .args(["dev-node", "--json", "--account", account])
        .env("PKSA_DEV_PASSWORD", &password)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(node.stdout.take().context("dev-node stdout")?).read_line(&mut line)?;
    let _node = Proc(node);
    let node_info: Value =
        serde_json::from_str(line.trim()).with_context(|| format!("dev-node: {line}"))?;
    let hive_api = node_info["hive_api_url"]
        .as_str()
        .context("hive_api_url")?
        .to_owned();
    let posting = PrivateKey::from_login(account, &password, KeyRole::Posting)?;

    let compose_text = interpolate(
        &std::fs::read_to_string(root.join("dist/container/compose.yaml"))?,
        &[("HIVE_API", &hive_api)],
    )?;
    let (services, secrets) = parse_compose(&compose_text)?;
    let world = World {
        bin: dir.join("image-bin"),
        volumes: dir.join("volumes"),
        scratch: dir.join("mounts"),
        project: dir.join("project"),
        image,
        services,
        secrets,
    };
    for d in [&world.bin, &world.volumes, &world.scratch, &world.project] {
        std::fs::create_dir_all(d)?;
    }
    for b in &world.image.binaries {
        let name = b.file_name().context("binary name")?;
        std::fs::copy(b, world.bin.join(name)).with_context(|| format!("{}", b.display()))?;
    }

    std::fs::write(
        world.project.join("posting.wif"),
        format!("{}\n", posting.to_wif().expose_secret()),
    )?;

    let secret = format!("container-{}", rand_hex());
    let steps = header_steps(&compose_text);
    let mut up: Vec<(String, Proc)> = vec![];
    let mut did = vec![];
    let mut app = String::new();
    for step in &steps {
        if let Some(rest) = step.strip_prefix("docker build ") {
            // Done above: the build stage's RUN (the runtime stage is this check's mounts).
            did.push(format!("docker build {rest}: the Dockerfile's cargo build"));
        } else if let Some(rest) = step.strip_prefix("mkdir -p ") {
            // `mkdir -p dist/container/pksa && cd dist/container`: the project directory.
            let sub = rest.split("&&").next().unwrap_or("").trim();
            let last = Path::new(sub).file_name().context("mkdir target")?;
            std::fs::create_dir_all(world.project.join(last))?;
            did.push(step.clone());
        } else if let Some(args) = step.strip_prefix("docker run --rm hive-pksa ") {
            world.run_step(None, args, None)?;
            // "then edit pksa/pksa.toml": the relay the header names, this check's node, a
            // secret, and the metrics listener the Dockerfile's EXPOSE line describes.
            let path = world.project.join("pksa/pksa.toml");
            let mut text = std::fs::read_to_string(&path)?;
            for (key, value) in [
                ("has_servers", "[\"ws://relay:7000\"]".to_owned()),
                ("hive_api", format!("[\"{hive_api}\"]")),
                ("auth_req_secret", format!("\"{secret}\"")),
                ("metrics_listen", "\"0.0.0.0:9108\"".to_owned()),
            ] {
                text = set_key(&text, key, &value)?;
            }
            if !text.contains("keystore_passphrase = \"credential:pksa-passphrase\"") {
                bail!("init --system's config does not read the passphrase credential:\n{text}");
            }
            std::fs::write(&path, text)?;
            did.push(step.clone());
        } else if step.starts_with('(') || step.starts_with("sudo chown ") {
            // Shell lines, as written (this check runs as root: no sudo needed).
            let line = step.trim_start_matches("sudo ");
            eprintln!("xtask$ (in the project) {line}");
            let st = Command::new("sh")
                .args(["-c", line])
                .current_dir(&world.project)
                .status()?;
            if !st.success() {
                bail!("{line}: {st}");
            }
            did.push(step.clone());
        } else if let Some(rest) = step.strip_prefix("docker compose run --rm -T ") {
            let (service, args) = rest.split_once(' ').context("compose run SERVICE ARGS")?;
            world.run_step(Some(service), args, None)?;
            // The app the operator enrolls is the one that authenticates below.
            let words: Vec<&str> = args.split_whitespace().collect();
            if words.first() == Some(&"enroll")
                && let Some(i) = words.iter().position(|w| *w == "--app")
            {
                app = words.get(i + 1).context("enroll --app NAME")?.to_string();
            }
            did.push(step.clone());
        } else if step.starts_with("docker compose up") {
            // In dependency order, each with the image's CMD when the service has none.
            let mut order: Vec<&String> = world.services.keys().collect();
            order.sort_by_key(|n| !world.services[*n].depends_on.is_empty());
            for name in order {
                let svc = &world.services[name];
                let args = svc
                    .command
                    .clone()
                    .unwrap_or_else(|| world.image.cmd.clone());
                eprintln!("xtask$ (container {name}) {}", args.join(" "));
                let mut child = world
                    .container(Some(name), &args)?
                    .stdin(Stdio::null())
                    .stdout(Stdio::inherit())
                    .stderr(Stdio::piped())
                    .spawn()?;
                let stderr = child.stderr.take().context("stderr")?;
                let tag = name.clone();
                let (tx, rx) = std::sync::mpsc::channel::<String>();
                std::thread::spawn(move || {
                    for l in BufReader::new(stderr).lines().map_while(Result::ok) {
                        if tx.send(l.clone()).is_err() {
                            eprintln!("[{tag}] {l}");
                        }
                    }
                });
                if name == "relay" {
                    wait_for("the relay container", &mut child, || {
                        TcpStream::connect("127.0.0.1:7000").is_ok()
                    })?;
                } else {
                    wait_for("the pksa container", &mut child, || {
                        crate::apps::http_status(9108, "/readyz") == Some(200)
                    })?;
                    // `--log-format json` (the image's CMD): its log lines are JSON.
                    let first = rx
                        .recv_timeout(Duration::from_secs(10))
                        .context("no log line")?;
                    serde_json::from_str::<Value>(&first)
                        .with_context(|| format!("log line not JSON: {first}"))?;
                }
                drop(rx);
                up.push((name.clone(), Proc(child)));
            }
            did.push(step.clone());
        } else if step.starts_with("docker compose logs") {
            did.push(format!(
                "{step}: the containers' stderr, checked as JSON above"
            ));
        } else {
            bail!("compose.yaml's header has a step this check does not know: {step}");
        }
    }
    if app.is_empty() {
        bail!("compose.yaml's header opens no enrollment window (enroll --app NAME) for an app");
    }
    if up.len() != world.services.len() {
        bail!(
            "compose up did not start every service ({} of {})",
            up.len(),
            world.services.len()
        );
    }

    // An app: authenticates in the enrollment window, a challenge, a vote broadcast.
    let session = dir.join("app-session.json");
    std::fs::write(dir.join("secret"), &secret)?;
    let client = |args: &[&str]| -> Result<Value> {
        let out = Command::new(root.join("target").join("debug").join("has-client"))
            .args([
                "--json",
                "--timeout",
                "30",
                "--session",
                &session.to_string_lossy(),
            ])
            .args(args)
            .output()?;
        if !out.status.success() {
            bail!(
                "has-client {}: {}{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(serde_json::from_slice(&out.stdout)?)
    };
    let secret_file = dir.join("secret").to_string_lossy().into_owned();
    let auth = client(&[
        "auth",
        "--account",
        account,
        "--app",
        &app,
        "--secret-file",
        &secret_file,
        "--challenge",
        "container",
    ])?;
    let want = posting.public_key().to_string();
    if auth["pubkey"].as_str() != Some(want.as_str()) {
        bail!("auth: the challenge was not signed by alice's posting key: {auth}");
    }
    let vote = format!(
        r#"[["vote",{{"voter":"{account}","author":"hiveio","permlink":"container","weight":10000}}]]"#
    );
    let signed = client(&["sign", "--ops", &vote])?;
    if signed["broadcast"] != Value::Bool(true) {
        bail!("sign: not broadcast: {signed}");
    }

    // `docker compose down`: SIGTERM, the service first; both exit 0 and the service's pid
    // file is gone from its volume.
    for (name, mut proc_) in up.into_iter().rev() {
        let pid = proc_.0.id().to_string();
        crate::sh("kill", &["-TERM", &pid], &[])?;
        let t0 = Instant::now();
        let status = loop {
            if let Some(s) = proc_.0.try_wait()? {
                break s;
            }
            if t0.elapsed() > Duration::from_secs(30) {
                bail!("{name} did not stop within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        if !status.success() {
            bail!("{name} exited with {status} on SIGTERM");
        }
    }
    let leftovers: Vec<_> = walk(&world.volumes)?
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "pid"))
        .collect();
    if !leftovers.is_empty() {
        bail!("pid files left behind: {leftovers:?}");
    }
    for d in &did {
        println!("container: {d}");
    }
    println!(
        "container: app authenticated (challenge by {want}), vote broadcast as {}, both containers stopped with SIGTERM, exit 0",
        signed["tx_id"].as_str().unwrap_or("?")
    );
    Ok(())
}

/// Compose's variable substitution for what the file uses: `${NAME:-default}` and
/// `${NAME}`, from `vars` (this check's environment for the file).
fn interpolate(text: &str, vars: &[(&str, &str)]) -> Result<String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("${") {
        out.push_str(&rest[..at]);
        let end = rest[at..]
            .find('}')
            .context("unclosed ${ in compose.yaml")?
            + at;
        let inner = &rest[at + 2..end];
        let (name, default) = match inner.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (inner, None),
        };
        match (vars.iter().find(|(n, _)| *n == name), default) {
            (Some((_, v)), _) => out.push_str(v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => bail!("compose.yaml: ${{{name}}} is not set"),
        }
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// `key = value` set in a TOML text: its line (commented out or not) replaced, or the line
/// added above the first table.
fn set_key(text: &str, key: &str, value: &str) -> Result<String> {
    let line = format!("{key} = {value}");
    let mut done = false;
    let mut out = vec![];
    for l in text.lines() {
        let bare = l.trim_start_matches('#').trim_start();
        if !done && (bare.starts_with(&format!("{key} =")) || bare.starts_with(&format!("{key}=")))
        {
            out.push(line.clone());
            done = true;
        } else {
            out.push(l.to_owned());
        }
    }
    if !done {
        let at = out
            .iter()
            .position(|l| l.starts_with('['))
            .context("no table")?;
        out.insert(at, line);
    }
    Ok(out.join("\n") + "\n")
}

fn walk(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        if p.is_dir() {
            out.extend(walk(&p)?);
        } else {
            out.push(p);
        }
    }
    Ok(out)
}
