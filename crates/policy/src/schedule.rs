//! When a rule applies: days of the week and hours of the day in a time zone.

use std::fmt;

use jiff::Timestamp;
use jiff::civil::Weekday;
use jiff::tz::TimeZone;

/// Day keywords in policies, Monday first.
pub const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// A rule's schedule. Outside it the rule is skipped as if it were disabled.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// Bit `i` set: day `DAY_NAMES[i]` is included. All days when no `days` were given.
    days: u8,
    /// Time-of-day windows; the whole day when empty.
    hours: Vec<HourRange>,
    /// Time zone name as written (`UTC` when none was given).
    zone_name: String,
    zone: TimeZone,
}

/// `HH:MM-HH:MM`, start inclusive, end exclusive; an end before the start wraps past midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HourRange {
    from: u16,
    to: u16,
}

impl Schedule {
    /// Builds a schedule from day names, hour ranges and a time zone name.
    pub fn new(
        days: &[&str],
        hours: Vec<HourRange>,
        zone_name: Option<&str>,
    ) -> Result<Schedule, String> {
        let mut mask = 0u8;
        for day in days {
            let index = DAY_NAMES
                .iter()
                .position(|d| d == day)
                .ok_or_else(|| format!("unknown day {day:?}; use {}", DAY_NAMES.join(", ")))?;
            mask |= 1 << index;
        }
        let zone_name = zone_name.unwrap_or("UTC").to_owned();
        let zone = TimeZone::get(&zone_name).map_err(|_| {
            format!("unknown time zone {zone_name:?}; use an IANA name such as Europe/Berlin")
        })?;
        Ok(Schedule {
            days: if days.is_empty() { 0x7f } else { mask },
            hours,
            zone_name,
            zone,
        })
    }

    /// Whether the schedule includes the instant `now`.
    pub fn is_active(&self, now: Timestamp) -> bool {
        let local = self.zone.to_datetime(now);
        let day = match local.weekday() {
            Weekday::Monday => 0,
            Weekday::Tuesday => 1,
            Weekday::Wednesday => 2,
            Weekday::Thursday => 3,
            Weekday::Friday => 4,
            Weekday::Saturday => 5,
            Weekday::Sunday => 6,
        };
        if self.days & (1 << day) == 0 {
            return false;
        }
        let minute = u16::try_from(local.hour()).unwrap_or(0) * 60
            + u16::try_from(local.minute()).unwrap_or(0);
        self.hours.is_empty() || self.hours.iter().any(|h| h.contains(minute))
    }

    /// The included days as keywords, or nothing when every day is included.
    pub fn day_names(&self) -> Vec<&'static str> {
        if self.days == 0x7f {
            return Vec::new();
        }
        DAY_NAMES
            .iter()
            .enumerate()
            .filter(|(i, _)| self.days & (1 << i) != 0)
            .map(|(_, d)| *d)
            .collect()
    }

    /// The time-of-day windows.
    pub fn hours(&self) -> &[HourRange] {
        &self.hours
    }

    /// The time zone as written.
    pub fn zone_name(&self) -> &str {
        &self.zone_name
    }
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.days == other.days && self.hours == other.hours && self.zone_name == other.zone_name
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.day_names();
        f.write_str(if days.is_empty() { "every day" } else { "" })?;
        f.write_str(&days.join(","))?;
        for h in &self.hours {
            write!(f, " {h}")?;
        }
        write!(f, " {}", self.zone_name)
    }
}

impl HourRange {
    /// Reads `09:00-17:30`. `24:00` is allowed as an end.
    pub fn parse(text: &str) -> Result<HourRange, String> {
        let (from, to) = text
            .split_once('-')
            .ok_or_else(|| format!("{text:?} is not a range; write it as HH:MM-HH:MM"))?;
        let from = minutes(from.trim())?;
        let to = minutes(to.trim())?;
        if from == to || from == 24 * 60 {
            return Err(format!("{text:?} is an empty range"));
        }
        Ok(HourRange { from, to })
    }

    fn contains(&self, minute: u16) -> bool {
        if self.from < self.to {
            (self.from..self.to).contains(&minute)
        } else {
            minute >= self.from || minute < self.to
        }
    }
}

impl fmt::Display for HourRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02}:{:02}-{:02}:{:02}",
            self.from / 60,
            self.from % 60,
            self.to / 60,
            self.to % 60
        )
    }
}

fn minutes(text: &str) -> Result<u16, String> {
    let bad = || format!("{text:?} is not a time of day; write it as HH:MM");
    let (h, m) = text.split_once(':').ok_or_else(bad)?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return Err(bad());
    }
    let h: u16 = h.parse().map_err(|_| bad())?;
    let m: u16 = m.parse().map_err(|_| bad())?;
    if m >= 60 || h > 24 || (h == 24 && m != 0) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn office_hours_in_berlin() {
        let s = Schedule::new(
            &["mon", "tue", "wed", "thu", "fri"],
            vec![HourRange::parse("09:00-17:00").unwrap()],
            Some("Europe/Berlin"),
        )
        .unwrap();
        // 2026-03-02 is a Monday; 08:30 UTC is 09:30 in Berlin (CET).
        assert!(s.is_active(at("2026-03-02T08:30:00Z")));
        assert!(!s.is_active(at("2026-03-02T07:30:00Z")));
        assert!(!s.is_active(at("2026-03-02T16:00:00Z")));
        assert!(!s.is_active(at("2026-03-07T10:00:00Z")));
    }

    #[test]
    fn night_windows_wrap() {
        let s = Schedule::new(&[], vec![HourRange::parse("22:00-06:00").unwrap()], None).unwrap();
        assert!(s.is_active(at("2026-03-02T23:00:00Z")));
        assert!(s.is_active(at("2026-03-02T05:59:00Z")));
        assert!(!s.is_active(at("2026-03-02T06:00:00Z")));
    }

    #[test]
    fn bad_input_is_explained() {
        assert!(HourRange::parse("9-17").is_err());
        assert!(HourRange::parse("09:00-25:00").is_err());
        assert!(HourRange::parse("09:00-09:00").is_err());
        assert!(Schedule::new(&["monday"], vec![], None).is_err());
        assert!(Schedule::new(&[], vec![], Some("Mars/Olympus")).is_err());
    }
}
