//! Response selection of a response context, RFC 3261 §16.7 steps 6 and 7: which final
//! response goes upstream when no 2xx was forwarded, and the 401/407 challenge aggregation.

use crate::transaction::TxResponse;

/// §16.7 step 6 as sent upstream: [`best_branch_response`] with a 503 turned into a 500.
#[cfg(test)]
pub(crate) fn best_response(finals: &[TxResponse]) -> Option<TxResponse> {
    best_branch_response(finals).map(upstream_form)
}

/// §16.7 step 6: a 503 chosen as the best response goes upstream as 500 (a 503 would tell
/// the caller that this proxy, not a branch, is unavailable).
pub(crate) fn upstream_form(r: TxResponse) -> TxResponse {
    if r.status() != 503 {
        return r;
    }
    let mut parts = r.parts();
    parts.status = 500;
    parts.reason = "Server Internal Error".into();
    TxResponse::build(parts)
}

/// §16.7 step 6: a 6xx if any; else the lowest class, preferring 401, 407, 415, 420, 484 among
/// 4xx. A chosen 401/407 carries every WWW-/Proxy-Authenticate of the context's 401/407
/// responses (step 7). `None` when there is no response at all. The status is the branch's
/// own (what `@proxy.on_failure` sees); [`upstream_form`] makes it what goes upstream.
pub(crate) fn best_branch_response(finals: &[TxResponse]) -> Option<TxResponse> {
    let chosen = finals.iter().find(|r| r.status() >= 600).or_else(|| {
        let class = finals.iter().map(|r| r.status() / 100).min()?;
        let in_class = || finals.iter().filter(move |r| r.status() / 100 == class);
        in_class()
            .find(|r| matches!(r.status(), 401 | 407 | 415 | 420 | 484))
            .or_else(|| in_class().next())
    })?;
    if !matches!(chosen.status(), 401 | 407) {
        return Some(chosen.clone());
    }
    let mut parts = chosen.parts();
    {
        parts.headers.retain(|(k, _)| {
            !k.eq_ignore_ascii_case("WWW-Authenticate")
                && !k.eq_ignore_ascii_case("Proxy-Authenticate")
        });
        for r in finals.iter().filter(|r| matches!(r.status(), 401 | 407)) {
            for name in ["WWW-Authenticate", "Proxy-Authenticate"] {
                for v in r.header_values(name) {
                    parts.headers.push((name.to_string(), v.to_string()));
                }
            }
        }
    }
    Some(TxResponse::build(parts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transaction::ResponseParts;

    fn resp(status: u16, headers: &[(&str, &str)]) -> TxResponse {
        TxResponse::build(ResponseParts {
            status,
            reason: "x".into(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..ResponseParts::default()
        })
    }

    fn pick(statuses: &[u16]) -> Option<u16> {
        let finals: Vec<_> = statuses.iter().map(|&s| resp(s, &[])).collect();
        best_response(&finals).map(|r| r.status())
    }

    #[test]
    fn selection_rules() {
        assert_eq!(pick(&[]), None);
        assert_eq!(pick(&[486, 302, 500]), Some(302));
        assert_eq!(pick(&[486, 404, 603, 302]), Some(603));
        assert_eq!(pick(&[404, 480, 407]), Some(407));
        assert_eq!(pick(&[404, 480]), Some(404));
        assert_eq!(pick(&[503]), Some(500));
        assert_eq!(pick(&[408, 503, 500]), Some(408));
    }

    #[test]
    fn challenges_are_aggregated() {
        let finals = [
            resp(401, &[("WWW-Authenticate", "Digest realm=\"a\"")]),
            resp(407, &[("Proxy-Authenticate", "Digest realm=\"b\"")]),
            resp(401, &[("WWW-Authenticate", "Digest realm=\"c\"")]),
        ];
        let best = best_response(&finals).unwrap();
        assert_eq!(best.status(), 401);
        assert_eq!(best.header_values("WWW-Authenticate").count(), 2);
        assert_eq!(best.header_values("Proxy-Authenticate").count(), 1);
    }
}
