//! What other tools and service managers rely on: reflection, health, sd_notify readiness, socket
//! activation, and a progress display only on a terminal.

use std::io::Read;
use std::os::unix::net::{UnixDatagram, UnixListener};
use std::process::{Command, Stdio};
use std::time::Duration;

use futures_util::StreamExt;
use integration::fixtures::*;
use integration::{TestDaemon, bin};
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::{Channel, Endpoint, Uri};
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

async fn channel(socket: std::path::PathBuf) -> Channel {
    Endpoint::from_static("http://unused")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(socket).await?,
                ))
            }
        }))
        .await
        .unwrap()
}

async fn reflect(
    client: &mut ServerReflectionClient<Channel>,
    request: MessageRequest,
) -> MessageResponse {
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(request),
    };
    let mut answers = client
        .server_reflection_info(tokio_stream::iter([req]))
        .await
        .unwrap()
        .into_inner();
    answers
        .next()
        .await
        .unwrap()
        .unwrap()
        .message_response
        .unwrap()
}

/// Encodes and decodes messages known only from descriptors fetched at run time.
struct DynamicCodec(MessageDescriptor);

impl Codec for DynamicCodec {
    type Encode = DynamicMessage;
    type Decode = DynamicMessage;
    type Encoder = DynamicCodec;
    type Decoder = DynamicCodec;
    fn encoder(&mut self) -> Self::Encoder {
        DynamicCodec(self.0.clone())
    }
    fn decoder(&mut self) -> Self::Decoder {
        DynamicCodec(self.0.clone())
    }
}

impl Encoder for DynamicCodec {
    type Item = DynamicMessage;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: DynamicMessage,
        dst: &mut EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        prost::Message::encode(&item, dst).map_err(|e| tonic::Status::internal(e.to_string()))
    }
}

impl Decoder for DynamicCodec {
    type Item = DynamicMessage;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<DynamicMessage>, tonic::Status> {
        DynamicMessage::decode(self.0.clone(), src)
            .map(Some)
            .map_err(|e| tonic::Status::internal(e.to_string()))
    }
}

async fn call(
    channel: &Channel,
    pool: &DescriptorPool,
    method: &str,
    request: DynamicMessage,
) -> DynamicMessage {
    let service = pool.get_service_by_name("hyperd.v1.ImageService").unwrap();
    let m = service.methods().find(|m| m.name() == method).unwrap();
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.unwrap();
    let path = format!("/hyperd.v1.ImageService/{method}").parse().unwrap();
    grpc.unary(tonic::Request::new(request), path, DynamicCodec(m.output()))
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test]
async fn the_api_can_be_discovered_and_called_through_reflection_alone() {
    let d = TestDaemon::start();
    let img = Image::new(&["reflect"], "amd64", Comp::None).await;
    let f = d.path("r.tar");
    std::fs::write(&f, docker_archive(&[(&img, &["reflected:1"])]).await).unwrap();
    d.ok(&["load", "-i", f.to_str().unwrap()]);

    let channel = channel(d.socket.clone()).await;
    let mut reflection = ServerReflectionClient::new(channel.clone());
    let MessageResponse::ListServicesResponse(list) =
        reflect(&mut reflection, MessageRequest::ListServices(String::new())).await
    else {
        panic!("not a service list");
    };
    let services: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(services.contains(&"hyperd.v1.ImageService"), "{services:?}");
    assert!(services.contains(&"grpc.health.v1.Health"), "{services:?}");

    let MessageResponse::FileDescriptorResponse(files) = reflect(
        &mut reflection,
        MessageRequest::FileContainingSymbol("hyperd.v1.ImageService".into()),
    )
    .await
    else {
        panic!("not file descriptors");
    };
    let mut pool = DescriptorPool::new();
    for bytes in &files.file_descriptor_proto {
        pool.decode_file_descriptor_proto(bytes.as_slice()).unwrap();
    }

    let version = call(
        &channel,
        &pool,
        "Version",
        DynamicMessage::new(
            pool.get_message_by_name("hyperd.v1.VersionRequest")
                .unwrap(),
        ),
    )
    .await;
    assert_eq!(
        version.get_field_by_name("api").unwrap().as_str(),
        Some("hyperd.v1")
    );

    let listed = call(
        &channel,
        &pool,
        "List",
        DynamicMessage::new(pool.get_message_by_name("hyperd.v1.ListRequest").unwrap()),
    )
    .await;
    let images = listed.get_field_by_name("images").unwrap();
    let images = images.as_list().unwrap();
    assert_eq!(images.len(), 1);
    let image = images[0].as_message().unwrap();
    assert_eq!(
        image.get_field_by_name("name").unwrap().as_str(),
        Some("docker.io/library/reflected:1")
    );
    assert_eq!(
        image.get_field_by_name("id").unwrap().as_str(),
        Some(img.id().as_str())
    );
}

#[tokio::test]
async fn health_reports_serving() {
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };
    let d = TestDaemon::start();
    let mut health = HealthClient::new(channel(d.socket.clone()).await);
    for service in ["", "hyperd.v1.ImageService"] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "{service:?}");
    }
}

#[test]
fn readiness_is_reported_through_sd_notify() {
    let dir = tempfile::tempdir().unwrap();
    let notify = dir.path().join("notify.sock");
    let listener = UnixDatagram::bind(&notify).unwrap();
    listener
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let socket = dir.path().join("hyperd.sock");
    let mut child = Command::new(bin("hyperd"))
        .arg("--root")
        .arg(dir.path().join("root"))
        .arg("--socket")
        .arg(&socket)
        .env("NOTIFY_SOCKET", &notify)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 256];
    let n = listener.recv(&mut buf).unwrap();
    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
    // Ready means serving: the socket already answers.
    let answered = std::os::unix::net::UnixStream::connect(&socket).is_ok();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(msg.contains("READY=1"), "{msg:?}");
    assert!(answered);
}

#[test]
fn a_socket_passed_by_systemd_is_served_and_left_in_place() {
    use command_fds::{CommandFdExt, FdMapping};
    use std::os::fd::AsFd;
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("activated.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    // LISTEN_PID must be hyperd's own pid: the shell sets it to its pid, then becomes hyperd.
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(
            r#"LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" --root "$1" --socket /nonexistent/unused.sock"#,
        )
        .arg(bin("hyperd"))
        .arg(dir.path().join("root"))
        .stderr(Stdio::piped());
    cmd.fd_mappings(vec![FdMapping {
        parent_fd: listener.as_fd().try_clone_to_owned().unwrap(),
        child_fd: 3,
    }])
    .unwrap();
    let child = cmd.spawn().unwrap();
    drop(listener);
    let out = Command::new(bin("hyperctl"))
        .arg("--socket")
        .arg(&socket)
        .arg("version")
        .output()
        .unwrap();
    let pid = rustix::process::Pid::from_child(&child);
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let daemon = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Server: hyperd"));
    assert!(
        daemon.status.success(),
        "{}",
        String::from_utf8_lossy(&daemon.stderr)
    );
    assert!(socket.exists(), "the socket belongs to systemd and stays");
}

/// Runs `args` under a pseudo-terminal (util-linux `script`) and returns everything it drew.
fn under_pty(d: &TestDaemon, args: &str) -> String {
    let command = format!(
        "{} --socket {} {args}",
        bin("hyperctl").display(),
        d.socket.display()
    );
    let mut child = Command::new("script")
        .args(["-qefc", &command, "/dev/null"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(child.wait().unwrap().success(), "{out}");
    out
}

#[tokio::test]
async fn progress_shows_on_a_terminal_and_nowhere_else() {
    let d = TestDaemon::start();
    let img = noise_image("progress", 4, 8 << 10, None).await;
    let f = d.path("p.tar");
    std::fs::write(
        &f,
        oci_archive(&[(&img, &[("io.containerd.image.name", "progress:1")])]).await,
    )
    .unwrap();
    let file = f.to_str().unwrap();

    let drawn = under_pty(&d, &format!("load -i {file}"));
    assert!(drawn.contains("loading"), "{drawn:?}");
    assert!(drawn.contains("MiB"), "bytes are shown: {drawn:?}");
    assert!(drawn.contains("Loaded image: progress:1"), "{drawn:?}");

    let quiet = under_pty(&d, &format!("load -q -i {file}"));
    assert!(!quiet.contains("loading"), "{quiet:?}");

    let out = d.ctl().args(["load", "-i", file]).output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "",
        "nothing drawn when stderr is not a terminal"
    );

    let saved = d.path("saved.tar");
    let drawn = under_pty(
        &d,
        &format!("save -f oci -o {} progress:1", saved.display()),
    );
    assert!(drawn.contains("saving"), "{drawn:?}");
    let out = d
        .ctl()
        .args([
            "save",
            "-f",
            "oci",
            "-o",
            saved.to_str().unwrap(),
            "progress:1",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
}

/// hyperctl with `args` run with a pseudo-terminal for stdin and stdout (`script`), as a user
/// types it; what it printed there, and whether it succeeded.
fn on_a_terminal(d: &TestDaemon, args: &str) -> (String, bool) {
    let command = format!(
        "{} --socket {} {args}",
        bin("hyperctl").display(),
        d.socket.display()
    );
    let out = Command::new("timeout")
        .args(["60", "script", "-qec", &command, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (text, out.status.success())
}

#[test]
fn save_refuses_to_write_an_archive_to_a_terminal() {
    let d = TestDaemon::start();
    let (text, ok) = on_a_terminal(&d, "save busybox");
    assert!(
        text.contains("refusing to write an archive to a terminal"),
        "{text}"
    );
    assert!(!ok);
}

#[test]
fn load_refuses_to_read_an_archive_from_a_terminal() {
    let d = TestDaemon::start();
    for args in ["load", "load -i -"] {
        let (text, ok) = on_a_terminal(&d, args);
        assert!(
            text.contains("refusing to read an archive from a terminal"),
            "{args}: {text}"
        );
        assert!(!ok, "{args}");
    }
}

#[test]
fn load_of_a_directory_names_it() {
    let d = TestDaemon::start();
    let dir = d.path("layout");
    std::fs::create_dir(&dir).unwrap();
    let out = d.run(&["load", "-i", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{} is a directory", dir.display())),
        "{err}"
    );
}

#[test]
fn completion_scripts_are_generated() {
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(bin("hyperctl"))
            .args(["completion", shell])
            .output()
            .unwrap();
        assert!(out.status.success());
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(
            script.contains("hyperctl") && script.contains("rmi"),
            "{shell}: {script}"
        );
    }
}
