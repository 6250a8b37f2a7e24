//! Host integration test: start the real engine (one interpreter per core on 3.12+), run a
//! script through the rings, reload it, shut down. Python can be initialised once per process,
//! so this is one test; the broad behaviour suite is pytest in scripting/tests/.

use std::sync::Arc;
use std::time::{Duration, Instant};

use siphon_script::{Disposition, Event, EventKind, Host, HostConfig, Meta, Mode, SipMessage};

fn event(id: u64, core: usize, method: &str) -> Event {
    let raw = format!(
        "{method} sip:bob@example.com SIP/2.0\r\nCSeq: 1 {method}\r\nCall-ID: c{id}\r\n\r\n"
    );
    Event {
        id,
        core,
        kind: EventKind::Request,
        request: Arc::new(SipMessage::parse(raw.as_bytes()).expect("valid message")),
        reply: None,
        meta: Meta::default(),
        request_id: None,
    }
}

fn wait(h: &siphon_script::HostHandle, core: usize) -> siphon_script::Actions {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(a) = h.poll(core) {
            return a;
        }
        assert!(Instant::now() < deadline, "no actions from core {core}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn engine_round_trip_reload_and_shutdown() {
    let dir = std::env::temp_dir().join(format!("siphon-host-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let script = dir.join("app.py");
    std::fs::write(&script, "from siphon import proxy\n@proxy.on_request('INVITE')\ndef h(r):\n    r.record_route()\n    r.reply(486, 'Busy Here')\n").expect("write");
    let bells = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut cfg = HostConfig::new(2, &script);
    let b = Arc::clone(&bells);
    cfg.doorbell = Some(Arc::new(move |_core| {
        b.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }));
    let host = Host::start(cfg).expect("host starts");
    if cfg!(Py_3_12) {
        assert_eq!(host.mode(), Mode::PerCore);
    }
    let h = host.handle();
    for core in 0..2 {
        h.submit(event(core as u64, core, "INVITE"))
            .expect("ring has room");
        let a = wait(&h, core);
        assert_eq!((a.id, a.core, a.record_route), (core as u64, core, true));
        assert!(matches!(
            a.disposition,
            Disposition::Reply { status: 486, .. }
        ));
        h.submit(event(10, core, "BYE")).expect("ring has room");
        let a = wait(&h, core);
        assert!(
            matches!(a.disposition, Disposition::Reply { status: 500, ref reason, .. } if reason == "No Script Handler")
        );
    }
    // One doorbell per batch that produced results: at least one per event sent one at a time.
    assert!(bells.load(std::sync::atomic::Ordering::Relaxed) >= 4);
    std::fs::write(&script, "from siphon import proxy\n@proxy.on_request\ndef h(r):\n    r.relay('sip:next.example.com')\n").expect("write");
    let g = h.reload();
    assert_eq!(h.wait_reloaded(g, Duration::from_secs(30)), Some(0));
    h.submit(event(20, 1, "BYE")).expect("ring has room");
    assert!(
        matches!(wait(&h, 1).disposition, Disposition::Relay { next_hop: Some(ref n), .. } if n == "sip:next.example.com")
    );
    assert!(
        h.render_metrics()
            .contains("siphon_script_reloads_total{result=\"ok\"}")
    );
    host.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}
