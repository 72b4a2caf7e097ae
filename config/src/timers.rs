//! The `[[tunnel]]` lifetime and liveness keys, parsed into [`SaTimers`] and [`Dpd`]:
//! swanctl-style durations (`"90s"`, `"10m"`, `"4h"`, `"1d"`, or integer seconds),
//! percentages (`"10%"`) and volumes (`"500M"`, 1024-based), and their consistency
//! rules. The settings and their defaults are declared in `ipsec_types`; scheduling by
//! them is the IKE engine's.

use crate::raw::{NumOrText, RawTunnel};
use crate::validate::Ctx;
use crate::ConfigError;
use ipsec_types::{Dpd, DpdAction, SaTimers};
use std::time::Duration;
use toml::Spanned;

/// Longest duration any lifetime or liveness key accepts (365 days).
pub const MAX_LIFETIME: Duration = Duration::from_secs(365 * 86_400);
/// Shortest rekey time and `dpd_timeout`.
const MIN_TIME: Duration = Duration::from_secs(1);

/// Converts and checks the lifetime and liveness keys of `tunnel[i]` (named `n`);
/// keys not set take the defaults of [`SaTimers`] and [`Dpd`].
pub(crate) fn timers(cx: &Ctx<'_>, t: &RawTunnel, i: usize, n: Option<&str>) -> Result<(SaTimers, Dpd), ConfigError> {
    let default = SaTimers::default();
    let key = |k: &str| format!("tunnel[{i}].{k}");
    let fail = |v: &Spanned<NumOrText>, k: &str, e: String| cx.err(Some(v.span()), key(k), n, e);
    let duration = |v: &Option<Spanned<NumOrText>>, k: &str| -> Result<Option<Duration>, ConfigError> {
        v.as_ref().map(|v| parse_duration(v.get_ref()).map_err(|e| fail(v, k, e))).transpose()
    };
    // A volume, or `default` when the key is not set (a set 0 is off).
    let volume = |v: &Option<Spanned<NumOrText>>, k: &str, default: Option<u64>| -> Result<Option<u64>, ConfigError> {
        match v {
            None => Ok(default),
            Some(v) => parse_volume(v.get_ref()).map_err(|e| fail(v, k, e)),
        }
    };
    // A rekey time and its hard lifetime: rekey >= 1 s, life > rekey (blaming life,
    // which is then always set explicitly: the default exceeds any rekey time).
    let pair = |rekey_v: &Option<Spanned<NumOrText>>,
                rekey_k: &str,
                life_v: &Option<Spanned<NumOrText>>,
                life_k: &str,
                default: Duration|
     -> Result<(Duration, Duration), ConfigError> {
        let rekey = duration(rekey_v, rekey_k)?.unwrap_or(default);
        if let Some(v) = rekey_v.as_ref().filter(|_| rekey < MIN_TIME) {
            return Err(fail(v, rekey_k, format!("{} is too short; the minimum is 1s", show(rekey))));
        }
        let life = duration(life_v, life_k)?.unwrap_or_else(|| SaTimers::default_life_time(rekey));
        if let Some(v) = life_v.as_ref().filter(|_| life <= rekey) {
            return Err(fail(
                v,
                life_k,
                format!("{} must be longer than {rekey_k} ({}): it is the hard limit", show(life), show(rekey)),
            ));
        }
        Ok((rekey, life))
    };

    let (ike_rekey_time, ike_life_time) =
        pair(&t.ike_rekey_time, "ike_rekey_time", &t.ike_life_time, "ike_life_time", default.ike_rekey_time)?;
    let (child_rekey_time, child_life_time) =
        pair(&t.child_rekey_time, "child_rekey_time", &t.child_life_time, "child_life_time", default.child_rekey_time)?;

    let rekey_jitter_percent = match &t.rekey_jitter {
        None => default.rekey_jitter_percent,
        Some(v) => match parse_percent(v.get_ref()).map_err(|e| fail(v, "rekey_jitter", e))? {
            p if p >= 100 => {
                return Err(fail(v, "rekey_jitter", format!("{p}% is too large; it must be below 100%")));
            }
            p => p,
        },
    };

    let child_rekey_bytes = volume(&t.child_rekey_bytes, "child_rekey_bytes", default.child_rekey_bytes)?;
    let child_rekey_packets = volume(&t.child_rekey_packets, "child_rekey_packets", default.child_rekey_packets)?;

    let dpd_default = Dpd::default();
    let delay = match duration(&t.dpd_delay, "dpd_delay")? {
        None => dpd_default.delay,
        Some(d) if d.is_zero() => None,
        Some(d) => Some(d),
    };
    let timeout = duration(&t.dpd_timeout, "dpd_timeout")?.unwrap_or(dpd_default.timeout);
    if let Some(v) = t.dpd_timeout.as_ref().filter(|_| timeout < MIN_TIME) {
        return Err(fail(v, "dpd_timeout", format!("{} is too short; the minimum is 1s", show(timeout))));
    }
    if let Some(delay) = delay.filter(|&d| timeout < d) {
        // Blame the key that was set (dpd_timeout if both were).
        let (v, k) = match (&t.dpd_timeout, &t.dpd_delay) {
            (Some(v), _) => (v, "dpd_timeout"),
            (None, Some(v)) => (v, "dpd_delay"),
            (None, None) => return Err(cx.err(None, key("dpd_timeout"), n, "shorter than dpd_delay".into())),
        };
        return Err(fail(
            v,
            k,
            format!(
                "dpd_timeout ({}{}) is shorter than dpd_delay ({})",
                show(timeout),
                if t.dpd_timeout.is_none() { ", the default" } else { "" },
                show(delay)
            ),
        ));
    }

    let action = match &t.dpd_action {
        None => dpd_default.action,
        Some(v) => match v.get_ref().as_str() {
            "restart" => DpdAction::Restart,
            "clear" => DpdAction::Clear,
            other => {
                return Err(cx.err(
                    Some(v.span()),
                    key("dpd_action"),
                    n,
                    format!("{other:?} is not one of \"restart\", \"clear\""),
                ))
            }
        },
    };

    let timers = SaTimers {
        ike_rekey_time,
        ike_life_time,
        child_rekey_time,
        child_life_time,
        rekey_jitter_percent,
        child_rekey_bytes,
        child_rekey_packets,
    };
    Ok((timers, Dpd { delay, timeout, action }))
}

/// Splits `s` (trimmed) into its leading ASCII digits and the rest, trimmed.
fn digits_and_unit(s: &str) -> (&str, &str) {
    let s = s.trim();
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    (s.get(..end).unwrap_or(""), s.get(end..).unwrap_or("").trim())
}

/// `num` (ASCII digits) as a number: `None` if empty, `Some(None)` if it overflows u64.
fn number(num: &str) -> Option<Option<u64>> {
    (!num.is_empty()).then(|| num.parse().ok())
}

/// A non-negative count from a TOML integer, or `None` for a negative one.
fn count(n: i64) -> Option<u64> {
    u64::try_from(n).ok()
}

/// `"90s"`, `"10m"`, `"4h"`, `"1d"`, `"300"` or an integer: seconds, at most [`MAX_LIFETIME`].
pub(crate) fn parse_duration(v: &NumOrText) -> Result<Duration, String> {
    let secs = match v {
        NumOrText::Num(n) => count(*n).ok_or_else(|| format!("{n} is negative"))?,
        NumOrText::Text(s) => {
            let bad = || format!("{s:?} is not a duration (an integer with unit s, m, h or d, e.g. \"90s\", \"4h\")");
            let (num, unit) = digits_and_unit(s);
            let scale: u64 = match unit {
                "" | "s" => 1,
                "m" => 60,
                "h" => 3600,
                "d" => 86_400,
                _ => return Err(bad()),
            };
            let too_long = || format!("{s:?} is too long; the maximum is 365d");
            let n = number(num).ok_or_else(bad)?.ok_or_else(too_long)?;
            n.checked_mul(scale).ok_or_else(too_long)?
        }
    };
    let d = Duration::from_secs(secs);
    if d > MAX_LIFETIME {
        return Err(format!("{} is too long; the maximum is 365d", show(d)));
    }
    Ok(d)
}

/// `"10%"`, `"10"` or an integer: 0..=100.
pub(crate) fn parse_percent(v: &NumOrText) -> Result<u8, String> {
    let (n, shown) = match v {
        NumOrText::Num(n) => (Some(*n), n.to_string()),
        NumOrText::Text(s) => {
            let (num, unit) = digits_and_unit(s);
            if !matches!(unit, "" | "%") {
                return Err(format!("{s:?} is not a percentage (e.g. \"10%\")"));
            }
            (num.parse::<i64>().ok(), format!("{s:?}"))
        }
    };
    let Some(n) = n else {
        return Err(format!("{shown} is not a percentage (e.g. \"10%\")"));
    };
    u8::try_from(n).ok().filter(|&p| p <= 100).ok_or_else(|| format!("{shown} is outside 0..=100%"))
}

/// `"500M"`, `"64k"`, `"2G"` (multiples of 1024) or an integer; 0 is `None` (off).
pub(crate) fn parse_volume(v: &NumOrText) -> Result<Option<u64>, String> {
    let n = match v {
        NumOrText::Num(n) => count(*n).ok_or_else(|| format!("{n} is negative"))?,
        NumOrText::Text(s) => {
            let bad = || format!("{s:?} is not a count (an integer with optional suffix k, M or G, e.g. \"500M\")");
            let (num, unit) = digits_and_unit(s);
            let scale: u64 = match unit {
                "" => 1,
                "k" | "K" => 1 << 10,
                "m" | "M" => 1 << 20,
                "g" | "G" => 1 << 30,
                _ => return Err(bad()),
            };
            let too_large = || format!("{s:?} is too large");
            let n = number(num).ok_or_else(bad)?.ok_or_else(too_large)?;
            n.checked_mul(scale).ok_or_else(too_large)?
        }
    };
    Ok((n != 0).then_some(n))
}

/// A duration for messages, in the largest unit that divides it (`4h`, `90s`).
pub(crate) fn show(d: Duration) -> String {
    let s = d.as_secs();
    if d.subsec_nanos() != 0 {
        return format!("{}s", d.as_secs_f64());
    }
    match s {
        0 => "0s".into(),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> NumOrText {
        NumOrText::Text(s.into())
    }

    #[test]
    fn durations() {
        for (s, secs) in [("90s", 90), ("10m", 600), ("4h", 14_400), ("1d", 86_400), ("300", 300), (" 7 s ", 7)] {
            assert_eq!(parse_duration(&text(s)), Ok(Duration::from_secs(secs)), "{s}");
        }
        assert_eq!(parse_duration(&NumOrText::Num(45)), Ok(Duration::from_secs(45)));
        assert_eq!(parse_duration(&text("365d")), Ok(MAX_LIFETIME));
        for bad in ["", "h", "4x", "4hours", "1.5h", "-3s", "4h30m", "+4h", "٣s"] {
            assert!(parse_duration(&text(bad)).unwrap_err().contains("is not a duration"), "{bad}");
        }
        assert!(parse_duration(&NumOrText::Num(-1)).unwrap_err().contains("negative"));
        assert!(parse_duration(&text("366d")).unwrap_err().contains("maximum is 365d"));
        assert!(parse_duration(&text("99999999999999999999d")).unwrap_err().contains("too long"));
        assert!(parse_duration(&text("18446744073709551615d")).unwrap_err().contains("too long"));
        assert!(parse_duration(&NumOrText::Num(i64::MAX)).unwrap_err().contains("too long"));
    }

    #[test]
    fn percentages() {
        for (s, p) in [("10%", 10), ("0%", 0), ("100%", 100), ("25", 25), (" 5 % ", 5)] {
            assert_eq!(parse_percent(&text(s)), Ok(p), "{s}");
        }
        assert_eq!(parse_percent(&NumOrText::Num(15)), Ok(15));
        for bad in ["101%", "%", "ten%", "10%%", "1.5%", "-1%"] {
            assert!(parse_percent(&text(bad)).is_err(), "{bad}");
        }
        assert!(parse_percent(&NumOrText::Num(-1)).unwrap_err().contains("outside 0..=100%"));
        assert!(parse_percent(&NumOrText::Num(256)).unwrap_err().contains("outside"));
    }

    #[test]
    fn volumes() {
        for (s, n) in [("500M", 500 << 20), ("64k", 64 << 10), ("2G", 2 << 30), ("2g", 2 << 30), ("1000", 1000)] {
            assert_eq!(parse_volume(&text(s)), Ok(Some(n)), "{s}");
        }
        assert_eq!(parse_volume(&NumOrText::Num(123)), Ok(Some(123)));
        assert_eq!(parse_volume(&NumOrText::Num(0)), Ok(None));
        assert_eq!(parse_volume(&text("0M")), Ok(None));
        for bad in ["", "M", "5T", "1.5G", "5 MB", "-5"] {
            assert!(parse_volume(&text(bad)).unwrap_err().contains("not a count"), "{bad}");
        }
        assert!(parse_volume(&text("18446744073709551615G")).unwrap_err().contains("too large"));
        assert!(parse_volume(&text("99999999999999999999")).unwrap_err().contains("too large"));
        assert!(parse_volume(&NumOrText::Num(-5)).unwrap_err().contains("negative"));
    }

    #[test]
    fn shown_durations() {
        let s = |secs| show(Duration::from_secs(secs));
        assert_eq!(
            (s(0), s(90), s(600), s(7200), s(172_800)),
            ("0s".into(), "90s".into(), "10m".into(), "2h".into(), "2d".into())
        );
        assert_eq!(show(Duration::from_millis(1100)), "1.1s");
    }
}
