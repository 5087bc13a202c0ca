//! End-to-end: virtio-net on a TAP device inside a network namespace this
//! test creates. Guest and host ping each other and move data over TCP both
//! ways, and a snapshot of the guest restored in another visor process
//! gets its TAP back by name; only the namespace's own 10.0.2.0/24 is ever addressed. Needs root
//! (network namespaces, /dev/net/tun) and the images `cargo xtask test` builds.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;

const HOST_IP: &str = "10.0.2.2";
const GUEST_IP: &str = "10.0.2.15";
const TAP: &str = "vtap0";

fn blob(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2654435761).to_le_bytes()[3] ^ seed)
        .collect()
}

/// The hex MD5 of `data`, by coreutils' md5sum (as the guest's busybox prints it).
fn md5(data: &[u8]) -> String {
    let mut child = Command::new("md5sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(data).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)[..32].to_string()
}

/// Linux from the test images on TAP `tap` in `ns`, with `extra` arguments.
fn linux_on_tap(ns: &Namespace, tap: &str, extra: &[&std::ffi::OsStr]) -> Session {
    let mut cmd = ns.command(env!("CARGO_BIN_EXE_visor"));
    cmd.args(["run", "--kernel"])
        .arg(image("VISOR_LINUX_IMAGE"))
        .arg("--initrd")
        .arg(image("VISOR_INITRAMFS"))
        .args(["--net", &format!("tap={tap}")])
        .args(extra);
    Session::start(cmd)
}

/// The guest in `vm` pings the host, and the host pings it, 3 of 3 each.
fn pings_both_ways(ns: &Namespace, vm: &mut Session, when: &str) {
    vm.send(&format!("ping -c 3 -W 5 {HOST_IP}"));
    vm.expect("3 packets transmitted, 3 packets received", STEP);
    let ping = ns
        .command("ping")
        .args(["-c", "3", "-W", "5", GUEST_IP])
        .output()
        .unwrap();
    assert!(
        ping.status.success(),
        "host ping of the guest {when} failed:\n{}",
        String::from_utf8_lossy(&ping.stdout)
    );
}

#[test]
fn guest_and_host_ping_and_tcp_over_virtio_net() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: virtio-net test needs root for network namespaces and /dev/net/tun");
        return;
    }
    let ns = Namespace::create(TAP, HOST_IP);
    let mut s = linux_on_tap(&ns, TAP, &["--stats".as_ref()]);
    s.expect("visor-init: ready", BOOT);
    s.expect("# ", STEP);
    s.send(&format!(
        "ip addr add {GUEST_IP}/24 dev eth0 && ip link set eth0 up && echo NET''-UP"
    ));
    s.expect("NET-UP", STEP);

    pings_both_ways(&ns, &mut s, "booted");

    // Guest fetches 1 MiB from a host TCP server.
    let download = blob(1 << 20, 0x5a);
    let served = download.clone();
    let listener_ready = std::sync::mpsc::channel();
    let server = {
        let ns_name = ns.0.clone();
        std::thread::spawn(move || {
            Namespace(ns_name.clone()).enter_and_forget();
            let listener = TcpListener::bind((HOST_IP, 8000)).unwrap();
            listener_ready.0.send(()).unwrap();
            let (mut conn, _) = listener.accept().unwrap();
            let mut request = [0u8; 1024];
            let _ = conn.read(&mut request).unwrap();
            let header = format!(
                "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n",
                served.len()
            );
            conn.write_all(header.as_bytes()).unwrap();
            conn.write_all(&served).unwrap();
        })
    };
    listener_ready.1.recv().unwrap();
    s.send(&format!(
        "wget -q -O /tmp/blob http://{HOST_IP}:8000/blob && md5sum /tmp/blob"
    ));
    s.expect(&md5(&download), STEP);
    server.join().unwrap();

    // Host fetches it back from a TCP server in the guest (busybox httpd).
    s.send("mkdir -p /tmp/www && cp /tmp/blob /tmp/www/ && httpd -p 8080 -h /tmp/www && echo HTTPD''-UP");
    s.expect("HTTPD-UP", STEP);
    let fetched = {
        let ns_name = ns.0.clone();
        std::thread::spawn(move || {
            Namespace(ns_name).enter_and_forget();
            let mut conn = TcpStream::connect((GUEST_IP, 8080)).expect("connecting to the guest");
            conn.write_all(b"GET /blob HTTP/1.0\r\n\r\n").unwrap();
            let mut response = Vec::new();
            conn.read_to_end(&mut response).unwrap();
            response
        })
        .join()
        .unwrap()
    };
    let body_at = fetched
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP response from the guest")
        + 4;
    let status = String::from_utf8_lossy(&fetched[..fetched.len().min(40)]).into_owned();
    assert!(status.contains(" 200 "), "guest httpd answered: {status}");
    assert!(
        fetched[body_at..] == download[..],
        "the 1 MiB came back intact"
    );

    s.send("poweroff");
    assert_eq!(s.wait_exit(STEP), 0);
    let stats = s.stderr();
    let row = stats
        .lines()
        .find(|l| l.starts_with("virtio-net"))
        .expect("virtio-net in --stats");
    let counters: Vec<u64> = row
        .split_whitespace()
        .skip(1)
        .map(|n| n.parse().unwrap())
        .collect();
    assert!(
        counters[2] >= 1 << 20 && counters[3] >= 1 << 20,
        "bytes moved: {row}"
    );
}

#[test]
fn a_restored_guest_gets_its_tap_back_by_name() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: virtio-net test needs root for network namespaces and /dev/net/tun");
        return;
    }
    const TAP2: &str = "vtap1";
    let dir = scratch_dir("net-restore");
    let socket = dir.join("api.sock");
    let ns = Namespace::create(TAP2, HOST_IP);
    let mut s = linux_on_tap(&ns, TAP2, &["--api-sock".as_ref(), socket.as_os_str()]);
    s.expect("visor-init: ready", BOOT);
    s.expect("# ", STEP);
    s.send(&format!(
        "ip addr add {GUEST_IP}/24 dev eth0 && ip link set eth0 up && ping -c 1 -W 5 {HOST_IP} >/dev/null && echo NET''-UP"
    ));
    s.expect("NET-UP", STEP);
    s.expect("# ", STEP);
    let snapshot = dir.join("snap");
    for (verb, args) in [("pause", vec![]), ("snapshot", vec![snapshot.clone()])] {
        let mut c = visor();
        c.arg(verb).arg("--api-sock").arg(&socket).args(&args);
        let out = run_with_timeout(c, STEP);
        assert!(
            out.status.success(),
            "{verb}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    drop(s);

    let socket2 = dir.join("api2.sock");
    let mut cmd = ns.command(env!("CARGO_BIN_EXE_visor"));
    cmd.args(["run", "--restore"])
        .arg(&snapshot)
        .arg("--api-sock")
        .arg(&socket2);
    let mut restored = Session::start(cmd);
    pings_both_ways(&ns, &mut restored, "restored");

    // The same snapshot loaded over the running VM takes the TAP over.
    let api = |verb: &str, args: &[&std::ffi::OsStr]| {
        let mut c = visor();
        c.arg(verb).arg("--api-sock").arg(&socket2).args(args);
        let out = run_with_timeout(c, STEP);
        assert!(
            out.status.success(),
            "{verb}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    api("pause", &[]);
    api("load", &["--resume".as_ref(), snapshot.as_os_str()]);
    pings_both_ways(&ns, &mut restored, "loaded");

    // And a migration to another visor on this host: the source lets the
    // TAP go at the stop, the destination attaches to it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cmd = ns.command(env!("CARGO_BIN_EXE_visor"));
    cmd.args(["run", "--incoming"])
        .arg(format!("tcp:127.0.0.1:{port}"));
    let mut moved = Session::start(cmd);
    std::thread::sleep(std::time::Duration::from_millis(300));
    api(
        "migrate",
        &["--to".as_ref(), format!("tcp:127.0.0.1:{port}").as_ref()],
    );
    assert_eq!(restored.wait_exit(STEP), 0, "the source ends once moved");
    pings_both_ways(&ns, &mut moved, "migrated");
    assert!(!moved.seen.contains("Linux version"), "not a reboot");
    moved.send("poweroff");
    assert_eq!(moved.wait_exit(STEP), 0);
}
