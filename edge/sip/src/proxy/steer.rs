//! Response steering: a classic BPF program for the UDP reuseport group that sends a response
//! straight to the socket of the core owning its client transaction, named in the Via branch
//! this proxy generated (`z9hG4bK-<core:4 hex>-…`, see `branch`). Without it, a response lands
//! on whichever core the kernel's 4-tuple hash picks and is forwarded to its owner over the
//! mesh: a second parse, a queue hop and a cross-CPU wake-up per response (three per call for
//! an INVITE dialog through a record-routing proxy).
//!
//! The kernel runs the program on the UDP payload of every datagram for the group
//! (`SO_ATTACH_REUSEPORT_CBPF`); its return value is the index of the socket to deliver to, and
//! an index out of range (we return `u32::MAX`) falls back to the hash. So requests (not
//! starting `SIP/`), responses whose first `z9hG4bK` branch (the top Via's) is not one of ours
//! or lies past the first [`SCAN_WINDOW`] bytes, and anything malformed keep the hash; the
//! receiving core still checks the owner and forwards what the program could not place. Classic BPF has no loops: the scan is unrolled, one load
//! and one compare per offset (~70 instructions run for a branch at offset 30; 4 for a request).

/// One classic BPF instruction: `(code, jt, jf, k)`, as `struct sock_filter`.
pub type SockFilter = (u16, u8, u8, u32);

/// Bytes of the payload searched for the first `z9hG4bK-`.
pub const SCAN_WINDOW: u32 = 768;

/// Offsets per unrolled block (each block checks the payload is long enough once).
const BLOCK: u32 = 32;
/// What the program returns when it does not place the datagram: out of range, so the hash.
const NONE: u32 = u32::MAX;

// Classic BPF encoding (linux/filter.h, linux/bpf_common.h).
const LD_W_ABS: u16 = 0x20;
const LD_W_IND: u16 = 0x40;
const LD_B_IND: u16 = 0x50;
const LD_W_LEN: u16 = 0x80;
const LD_IMM: u16 = 0x00;
const LD_MEM: u16 = 0x60;
const LDX_IMM: u16 = 0x01;
const LDX_MEM: u16 = 0x61;
const ST: u16 = 0x02;
const STX: u16 = 0x03;
const SUB_K: u16 = 0x14;
const LSH_K: u16 = 0x64;
const ADD_X: u16 = 0x0c;
const JA: u16 = 0x05;
const JEQ_K: u16 = 0x15;
const JGE_K: u16 = 0x35;
const JGT_K: u16 = 0x25;
const RET_K: u16 = 0x06;
const RET_A: u16 = 0x16;

fn word(b: &[u8; 4]) -> u32 {
    u32::from_be_bytes(*b)
}

/// A jump whose target is a label, resolved when the program is finished.
enum Fix {
    /// A conditional jump at `at`: labels for true and false (`None`: the next instruction).
    Cond {
        at: usize,
        jt: Option<usize>,
        jf: Option<usize>,
    },
    /// An unconditional jump at `at` to a label.
    Always { at: usize, to: usize },
}

/// A tiny assembler: jumps name labels, resolved forward (classic BPF only jumps forward,
/// `jt`/`jf` at most 255 instructions, `ja` any distance).
#[derive(Default)]
struct Asm {
    code: Vec<SockFilter>,
    fixups: Vec<Fix>,
    labels: Vec<Option<usize>>,
}

impl Asm {
    fn label(&mut self) -> usize {
        self.labels.push(None);
        self.labels.len() - 1
    }
    fn bind(&mut self, l: usize) {
        self.labels[l] = Some(self.code.len());
    }
    fn op(&mut self, code: u16, k: u32) {
        self.code.push((code, 0, 0, k));
    }
    /// Conditional jump; `None` falls through.
    fn jump(&mut self, code: u16, k: u32, jt: Option<usize>, jf: Option<usize>) {
        self.fixups.push(Fix::Cond {
            at: self.code.len(),
            jt,
            jf,
        });
        self.code.push((code, 0, 0, k));
    }
    fn ja(&mut self, to: usize) {
        self.fixups.push(Fix::Always {
            at: self.code.len(),
            to,
        });
        self.code.push((JA, 0, 0, 0));
    }
    /// The program. The layout is fixed, so a label left unbound or a conditional jump
    /// beyond 255 is a bug in [`steering_program`] that its unit tests catch.
    fn finish(mut self) -> Vec<SockFilter> {
        let rel = |from: usize, to: usize| -> u32 {
            let to = self.labels[to].expect("label bound");
            u32::try_from(to - from - 1).expect("forward jump")
        };
        let short = |from: usize, to: usize| u8::try_from(rel(from, to)).expect("within 255");
        for f in &self.fixups {
            match *f {
                Fix::Always { at, to } => self.code[at].3 = rel(at, to),
                Fix::Cond { at, jt, jf } => {
                    if let Some(t) = jt {
                        self.code[at].1 = short(at, t);
                    }
                    if let Some(t) = jf {
                        self.code[at].2 = short(at, t);
                    }
                }
            }
        }
        self.code
    }
}

/// The steering program (see the module documentation). Its size is fixed (~3,300
/// instructions, under the kernel's 4,096).
pub fn steering_program() -> Vec<SockFilter> {
    let mut a = Asm::default();
    let decode = a.label();
    let scanned = a.label();
    // A response: at least "SIP/" and a Via.
    let not_response = a.label();
    a.op(LD_W_LEN, 0);
    a.jump(JGE_K, 32, None, Some(not_response));
    a.op(LD_W_ABS, 0);
    a.jump(JEQ_K, word(b"SIP/"), None, Some(not_response));
    let first_block = a.label();
    a.ja(first_block);
    a.bind(not_response);
    a.op(RET_K, NONE);
    a.bind(first_block);
    let magic = word(b"z9hG");
    let blocks = SCAN_WINDOW / BLOCK;
    for b in 0..blocks {
        let base = b * BLOCK;
        // Every load in this block and the decode after a match (up to offset + 12) must be
        // inside the payload: a classic BPF load past the end ends the program with 0, which
        // would steer to core 0.
        let long_enough = a.label();
        a.op(LD_W_LEN, 0);
        a.jump(JGE_K, base + BLOCK + 13, Some(long_enough), None);
        a.op(RET_K, NONE);
        a.bind(long_enough);
        let stubs: Vec<usize> = (0..BLOCK).map(|_| a.label()).collect();
        for (j, stub) in stubs.iter().enumerate() {
            a.op(LD_W_ABS, base + j as u32);
            a.jump(JEQ_K, magic, Some(*stub), None);
        }
        let next = a.label();
        a.ja(next);
        for (j, stub) in stubs.iter().enumerate() {
            a.bind(*stub);
            a.op(LDX_IMM, base + j as u32);
            a.ja(decode);
        }
        a.bind(next);
    }
    a.bind(scanned);
    a.op(RET_K, NONE);
    // X = offset of "z9hG"; M[2] keeps it, M[0] accumulates the core number.
    let fail = a.label();
    a.bind(decode);
    a.op(STX, 2);
    a.op(LD_W_IND, 4);
    a.jump(JEQ_K, word(b"4bK-"), None, Some(fail));
    a.op(LD_IMM, 0);
    a.op(ST, 0);
    for d in 0..4 {
        let alpha = a.label();
        let digit = a.label();
        a.op(LDX_MEM, 2);
        a.op(LD_B_IND, 8 + d);
        a.jump(JGE_K, u32::from(b'a'), Some(alpha), None);
        a.op(SUB_K, u32::from(b'0'));
        a.jump(JGT_K, 9, Some(fail), Some(digit));
        a.bind(alpha);
        a.op(SUB_K, u32::from(b'a') - 10);
        a.jump(JGT_K, 15, Some(fail), None);
        a.bind(digit);
        a.op(ST, 1);
        a.op(LDX_MEM, 1);
        a.op(LD_MEM, 0);
        a.op(LSH_K, 4);
        a.op(ADD_X, 0);
        a.op(ST, 0);
    }
    a.op(LDX_MEM, 2);
    a.op(LD_B_IND, 12);
    a.jump(JEQ_K, u32::from(b'-'), None, Some(fail));
    a.op(LD_MEM, 0);
    a.op(RET_A, 0);
    a.bind(fail);
    a.op(RET_K, NONE);
    a.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A classic BPF interpreter for the opcodes the program uses, with the kernel's rule that
    /// a load past the end returns 0 from the program.
    fn run(prog: &[SockFilter], pkt: &[u8]) -> u32 {
        let (mut a, mut x, mut m) = (0u32, 0u32, [0u32; 16]);
        let mut pc = 0usize;
        let load = |off: u32, n: usize| -> Option<u32> {
            let s = usize::try_from(off).ok()?;
            let b = pkt.get(s..s.checked_add(n)?)?;
            Some(b.iter().fold(0u32, |acc, &v| (acc << 8) | u32::from(v)))
        };
        for _ in 0..10_000 {
            let (code, jt, jf, k) = prog[pc];
            pc += 1;
            match code {
                LD_W_ABS => match load(k, 4) {
                    Some(v) => a = v,
                    None => return 0,
                },
                LD_W_IND => match load(x.wrapping_add(k), 4) {
                    Some(v) => a = v,
                    None => return 0,
                },
                LD_B_IND => match load(x.wrapping_add(k), 1) {
                    Some(v) => a = v,
                    None => return 0,
                },
                LD_W_LEN => a = pkt.len() as u32,
                LD_IMM => a = k,
                LD_MEM => a = m[k as usize],
                LDX_IMM => x = k,
                LDX_MEM => x = m[k as usize],
                ST => m[k as usize] = a,
                STX => m[k as usize] = x,
                SUB_K => a = a.wrapping_sub(k),
                LSH_K => a <<= k,
                ADD_X => a = a.wrapping_add(x),
                JA => pc += k as usize,
                JEQ_K | JGE_K | JGT_K => {
                    let t = match code {
                        JEQ_K => a == k,
                        JGE_K => a >= k,
                        _ => a > k,
                    };
                    pc += usize::from(if t { jt } else { jf });
                }
                RET_K => return k,
                RET_A => return a,
                other => panic!("opcode {other:#x} not interpreted"),
            }
        }
        panic!("no return");
    }

    fn response(pad: usize, branch: &str) -> Vec<u8> {
        format!(
            "SIP/2.0 180 Ringing\r\nX-Pad: {}\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch={branch}\r\n\
             Via: SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bK-0007-0000000000000000-1\r\n\
             Call-ID: a@b\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
            "x".repeat(pad)
        )
        .into_bytes()
    }

    #[test]
    fn fits_the_kernel_limit_and_jumps_resolve() {
        let p = steering_program();
        assert!(p.len() <= 4096, "{} instructions", p.len());
        assert!(p.len() > 100);
    }

    #[test]
    fn a_response_goes_to_the_core_in_its_first_branch() {
        let p = steering_program();
        for pad in [0, 1, 2, 3, 31, 32, 33, 100, 500, 650] {
            for core in [0u16, 1, 9, 10, 15, 16, 255, 0x1234] {
                let b = crate::proxy::Branch::new(core, 42, 7);
                assert_eq!(
                    run(&p, &response(pad, b.as_str())),
                    u32::from(core),
                    "pad {pad}"
                );
            }
        }
    }

    #[test]
    fn everything_else_keeps_the_hash() {
        let p = steering_program();
        let invite = b"INVITE sip:bob@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK-0001-0000000000000000-1\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(run(&p, invite), NONE, "requests");
        // The first branch decides (the top Via): a foreign one there is not our transaction.
        assert_eq!(
            run(&p, &response(0, "z9hG4bK776asdhds")),
            NONE,
            "foreign top Via"
        );
        let no_ours = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK776asdhds\r\nCall-ID: a\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(run(&p, no_ours), NONE, "a foreign branch only");
        for bad in [
            "z9hG4bK-00g1-0000000000000000-1",
            "z9hG4bK-00A1-0000000000000000-1",
            "z9hG4bK-001:-0000000000000000-1",
            "z9hG4bK-0001x0000000000000000-1",
            "z9hG4bK-01-0000000000000000-1",
        ] {
            assert_eq!(run(&p, &response(0, bad)), NONE, "{bad}");
        }
        // Past the window: the hash (the owner check on the receiving core still applies).
        assert_eq!(
            run(
                &p,
                &response(SCAN_WINDOW as usize, "z9hG4bK-0001-0000000000000000-1")
            ),
            NONE
        );
        // Short datagrams never read past their end (which would return 0: core 0).
        for n in 0..60 {
            let r = response(0, "z9hG4bK-0003-0000000000000000-1");
            let v = run(&p, &r[..n]);
            assert_eq!(v, NONE, "first {n} bytes");
        }
        let tight = b"SIP/2.0 1 a\r\nVia: x;branch=z9hG4bK-0002-";
        assert_eq!(run(&p, tight), NONE, "shorter than a block's guard");
    }
}
