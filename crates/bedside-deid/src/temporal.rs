//! Date arithmetic for DA and DT values, and age capping for AS values.

/// Days since 1970-01-01 of a proleptic Gregorian date.
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date `days` after 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ => {
            if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 {
                29
            } else {
                28
            }
        }
    }
}

fn digits(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parses a calendar date written `YYYYMMDD` (DA) or, as in old ACR-NEMA files, `YYYY.MM.DD`.
pub fn parse_date(s: &str) -> Option<(i64, u32, u32)> {
    if !s.is_ascii() {
        return None;
    }
    let compact: String;
    let s = if s.len() == 10
        && s.as_bytes().get(4) == Some(&b'.')
        && s.as_bytes().get(7) == Some(&b'.')
    {
        compact = s.replace('.', "");
        compact.as_str()
    } else {
        s
    };
    if s.len() != 8 {
        return None;
    }
    let y = i64::from(digits(&s[0..4])?);
    let m = digits(&s[4..6])?;
    let d = digits(&s[6..8])?;
    if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
        return None;
    }
    Some((y, m, d))
}

fn format_date(y: i64, m: u32, d: u32) -> Option<String> {
    if !(0..=9999).contains(&y) {
        return None;
    }
    Some(format!("{y:04}{m:02}{d:02}"))
}

/// Shifts one DA value (or a `from-to` range of them) by `days`. `None` if it is not a date.
pub fn shift_da(value: &str, days: i32) -> Option<String> {
    let v = value.trim_matches([' ', '\0']);
    if v.is_empty() {
        return Some(String::new());
    }
    if let Some((a, b)) = v.split_once('-') {
        return range_ends(a, b, |x| shift_da(x, days));
    }
    let (y, m, d) = parse_date(v)?;
    let (y, m, d) = civil_from_days(days_from_civil(y, m, d) + i64::from(days));
    format_date(y, m, d)
}

/// Shifts one DT value by `days`, keeping its precision, time of day and UTC offset.
///
/// A value with year or year-month precision is shifted as its first day and truncated back to
/// the same precision. `None` if it is not a date-time.
pub fn shift_dt(value: &str, days: i32) -> Option<String> {
    let v = value.trim_matches([' ', '\0']);
    if !v.is_ascii() {
        return None;
    }
    if v.is_empty() {
        return Some(String::new());
    }
    if let Some((a, b)) = split_dt_range(v) {
        return range_ends(a, b, |x| shift_dt(x, days));
    }
    // The UTC offset, if any, starts at the first '+' or '-'.
    let (body, offset) = match v.find(['+', '-']) {
        Some(i) => (&v[..i], &v[i..]),
        None => (v, ""),
    };
    let date_len = body.len().min(8);
    let date_part = &body[..date_len];
    let rest = &body[date_len..];
    if date_len < 4 || date_len % 2 != 0 {
        return None;
    }
    let y = i64::from(digits(&date_part[0..4])?);
    let m = if date_len >= 6 {
        digits(&date_part[4..6])?
    } else {
        1
    };
    let d = if date_len == 8 {
        digits(&date_part[6..8])?
    } else {
        1
    };
    if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
        return None;
    }
    if !rest.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    let (ny, nm, nd) = civil_from_days(days_from_civil(y, m, d) + i64::from(days));
    let full = format_date(ny, nm, nd)?;
    Some(format!("{}{rest}{offset}", &full[..date_len]))
}

/// Rotates one TM value by `seconds` around the clock (modulo 24 h), keeping its precision
/// (`HH`, `HHMM`, `HHMMSS`, `HHMMSS.F…`). Dates are shifted by whole days and times rotated by
/// the same keyed amount for every attribute of a patient, so times of day no longer match the
/// original ones while intervals within a day are kept (except across the rotated midnight).
/// `None` if it is not a time; ranges (`A-B`) rotate both ends.
pub fn shift_tm(value: &str, seconds: u32) -> Option<String> {
    let v = value.trim_matches([' ', '\0']);
    if v.is_empty() {
        return Some(String::new());
    }
    if let Some((a, b)) = v.split_once('-') {
        return range_ends(a, b, |x| shift_tm(x, seconds));
    }
    // The old ACR-NEMA form HH:MM:SS is read too and written in the standard form.
    let compact: String = v.chars().filter(|c| *c != ':').collect();
    let (whole, fraction) = match compact.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (compact.as_str(), None),
    };
    if !(whole.len() == 2 || whole.len() == 4 || whole.len() == 6)
        || !whole.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    if fraction.is_some_and(|f| !f.bytes().all(|b| b.is_ascii_digit())) {
        return None;
    }
    let h = digits(&whole[0..2])?;
    let m = if whole.len() >= 4 {
        digits(&whole[2..4])?
    } else {
        0
    };
    let sec = if whole.len() == 6 {
        digits(&whole[4..6])?
    } else {
        0
    };
    if h > 23 || m > 59 || sec > 60 {
        return None;
    }
    let t = (h * 3600 + m * 60 + sec.min(59) + seconds % 86_400) % 86_400;
    let (nh, nm, ns) = (t / 3600, (t / 60) % 60, t % 60);
    let mut out = match whole.len() {
        2 => format!("{nh:02}"),
        4 => format!("{nh:02}{nm:02}"),
        _ => format!("{nh:02}{nm:02}{ns:02}"),
    };
    if let Some(f) = fraction {
        out.push('.');
        out.push_str(f);
    }
    Some(out)
}

/// Shifts a DT value by `days` and rotates its time of day (if present) by `seconds`, like
/// [`shift_da`] and [`shift_tm`] do for separate date and time attributes, so a DT and its DA/TM
/// twins stay consistent.
pub fn shift_dt_and_time(value: &str, days: i32, seconds: u32) -> Option<String> {
    let shifted = shift_dt(value, days)?;
    if seconds == 0 || shifted.is_empty() {
        return Some(shifted);
    }
    let one = |v: &str| -> Option<String> {
        let (body, offset) = match v.find(['+', '-']) {
            Some(i) => (&v[..i], &v[i..]),
            None => (v, ""),
        };
        if body.len() <= 8 {
            return Some(v.to_string());
        }
        Some(format!(
            "{}{}{offset}",
            &body[..8],
            shift_tm(&body[8..], seconds)?
        ))
    };
    match split_dt_range(&shifted) {
        Some((a, b)) => range_ends(a, b, one),
        None => one(&shifted),
    }
}

/// Applies `f` to both ends of an `A-B` range (an empty end stays empty).
fn range_ends(a: &str, b: &str, f: impl Fn(&str) -> Option<String>) -> Option<String> {
    let end = |x: &str| {
        if x.is_empty() {
            Some(String::new())
        } else {
            f(x)
        }
    };
    Some(format!("{}-{}", end(a)?, end(b)?))
}

fn split_dt_range(v: &str) -> Option<(&str, &str)> {
    // A range is `A-B` where the '-' is not a UTC offset sign: offsets follow at least 4 digits
    // and are exactly 5 characters at the end. Treat a '-' as a range separator when what follows
    // is empty or starts a 4+ digit year and the part before is not itself a bare offset.
    let i = v.find('-')?;
    let after = &v[i + 1..];
    let before = &v[..i];
    let after_is_offset =
        after.len() == 4 && after.bytes().all(|b| b.is_ascii_digit()) && before.len() >= 4;
    if after_is_offset {
        return None;
    }
    Some((before, after))
}

/// Caps an AS value (`nnnD`, `nnnW`, `nnnM`, `nnnY`) at `090Y` when it is over 89 years.
///
/// Returns `None` when the value is not an age string.
pub fn cap_age(value: &str) -> Option<(String, bool)> {
    let v = value.trim_matches([' ', '\0']);
    if v.len() != 4 || !v.is_ascii() {
        return None;
    }
    let n = f64::from(digits(&v[0..3])?);
    let years = match &v[3..4] {
        "D" => n / 365.25,
        "W" => n * 7.0 / 365.25,
        "M" => n / 12.0,
        "Y" => n,
        _ => return None,
    };
    if years >= 90.0 {
        Some(("090Y".to_string(), true))
    } else {
        Some((v.to_string(), false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trip() {
        for days in [-800_000i64, -1, 0, 1, 11_016, 20_000, 2_000_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(
            days_from_civil(2000, 3, 1) - days_from_civil(2000, 2, 28),
            2
        );
    }

    #[test]
    fn dates_shift_across_months_years_and_leap_days() {
        assert_eq!(shift_da("20240301", -1).as_deref(), Some("20240229"));
        assert_eq!(shift_da("20230301", -1).as_deref(), Some("20230228"));
        assert_eq!(shift_da("20000101", -1).as_deref(), Some("19991231"));
        assert_eq!(shift_da("1999.12.31", 1).as_deref(), Some("20000101"));
        assert_eq!(
            shift_da("20200101-20200110", 10).as_deref(),
            Some("20200111-20200120")
        );
        assert_eq!(shift_da("2020013", 1), None);
        assert_eq!(shift_da("20200230", 1), None);
    }

    #[test]
    fn datetimes_keep_precision_time_and_offset() {
        assert_eq!(
            shift_dt("20200101123000.5+0100", -2).as_deref(),
            Some("20191230123000.5+0100")
        );
        assert_eq!(shift_dt("202003", -1).as_deref(), Some("202002"));
        assert_eq!(shift_dt("2020", -1).as_deref(), Some("2019"));
        assert_eq!(
            shift_dt("20200101-0500", 1).as_deref(),
            Some("20200102-0500")
        );
        assert_eq!(
            shift_dt("20200101-20200201", 1).as_deref(),
            Some("20200102-20200202")
        );
        assert_eq!(shift_dt("20AB", 1), None);
        assert_eq!(shift_dt("2020\u{e9}0101", 1), None);
        assert_eq!(shift_da("20\u{e9}0101", 1), None);
        assert_eq!(cap_age("\u{e9}5Y"), None);
    }

    #[test]
    fn times_rotate_with_precision_and_wrap() {
        assert_eq!(shift_tm("235930", 120).as_deref(), Some("000130"));
        assert_eq!(shift_tm("1015", 3600).as_deref(), Some("1115"));
        assert_eq!(shift_tm("07", 7200).as_deref(), Some("09"));
        assert_eq!(
            shift_tm("101500.123456", 1).as_deref(),
            Some("101501.123456")
        );
        assert_eq!(shift_tm("10:15:00", 60).as_deref(), Some("101600"));
        assert_eq!(shift_tm("0800-0900", 3600).as_deref(), Some("0900-1000"));
        assert_eq!(shift_tm("", 5).as_deref(), Some(""));
        assert_eq!(shift_tm("2561", 5), None);
        assert_eq!(shift_tm("ab", 5), None);
        assert_eq!(
            shift_dt_and_time("20240301235900.5+0100", -1, 120).as_deref(),
            Some("20240229000100.5+0100")
        );
        assert_eq!(
            shift_dt_and_time("20240301", -1, 120).as_deref(),
            Some("20240229")
        );
    }

    #[test]
    fn ages_over_89_are_capped() {
        assert_eq!(cap_age("045Y"), Some(("045Y".into(), false)));
        assert_eq!(cap_age("089Y"), Some(("089Y".into(), false)));
        assert_eq!(cap_age("090Y"), Some(("090Y".into(), true)));
        assert_eq!(cap_age("102Y"), Some(("090Y".into(), true)));
        // 999 months is 83 years: below the cap.
        assert_eq!(cap_age("999M"), Some(("999M".into(), false)));
        assert_eq!(cap_age("012W"), Some(("012W".into(), false)));
        assert_eq!(cap_age("45"), None);
    }
}
