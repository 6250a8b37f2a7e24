//! A UDP SIP request larger than a receive buffer's resident 4 KiB reaches the script whole, on
//! both reactor backends (`io_backend: auto`, io_uring where available, and `epoll`): the
//! script answers OPTIONS with the length of its `X-Big` header.

mod common;

use common::{Node, Placement, Ua, request, status};

const SCRIPT: &str = r#"
from siphon import proxy

@proxy.on_request("OPTIONS")
def options(request):
    big = request.get_header("X-Big") or ""
    request.reply(200, f"Big {len(big)}")
"#;

#[test]
fn large_udp_requests_are_processed_whole() {
    let one_core = Placement {
        inline: true,
        cores: 1,
    };
    // `auto` runs io_uring where the probe passes (the node logs which), `epoll` the fallback.
    for backend in ["auto", "epoll"] {
        let extra = format!("  io_backend: {backend}\n");
        let node = Node::with_script("large-udp", SCRIPT, one_core, &extra);
        let ua = Ua::new();
        for size in [5_000usize, 20_000, 60_000] {
            let big = "x".repeat(size);
            let call_id = format!("large-{backend}-{size}");
            let msg = request(
                "OPTIONS",
                "sip:svc@127.0.0.1",
                ua.addr,
                &call_id,
                &format!("X-Big: {big}\r\n"),
            );
            assert!(msg.len() > size, "{} bytes on the wire", msg.len());
            ua.send(node.sip, &msg);
            let reply = ua
                .recv_final()
                .unwrap_or_else(|| panic!("{backend}: no answer to {size}:\n{}", node.log()));
            assert_eq!(status(&reply), Some(200), "{backend} {size}: {reply}");
            let first = reply.lines().next().unwrap_or("");
            assert_eq!(first, format!("SIP/2.0 200 Big {size}"), "{backend}");
            assert!(reply.contains(&call_id), "{backend}: {reply}");
        }
    }
}
