//! Civil dates without a calendar dependency (proleptic Gregorian, days since 1970-01-01).

/// A calendar date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Date {
    /// Year.
    pub year: i32,
    /// Month 1–12.
    pub month: u32,
    /// Day 1–31.
    pub day: u32,
}

impl Date {
    /// The date `days` after 1970-01-01 (negative before).
    pub fn from_days(days: i64) -> Date {
        // Howard Hinnant's civil_from_days.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let y = yoe + era * 400;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        Date {
            year: (if m <= 2 { y + 1 } else { y }) as i32,
            month: m as u32,
            day: d as u32,
        }
    }

    /// Days since 1970-01-01.
    pub fn to_days(self) -> i64 {
        let y = if self.month <= 2 {
            self.year - 1
        } else {
            self.year
        } as i64;
        let era = y.div_euclid(400);
        let yoe = y.rem_euclid(400);
        let m = self.month as i64;
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + self.day as i64 - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    /// DICOM DA form `YYYYMMDD`.
    pub fn da(self) -> String {
        format!("{:04}{:02}{:02}", self.year, self.month, self.day)
    }

    /// ISO form `YYYY-MM-DD`.
    pub fn iso(self) -> String {
        format!("{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }

    /// US form `MM/DD/YYYY`.
    pub fn us(self) -> String {
        format!("{:02}/{:02}/{:04}", self.month, self.day, self.year)
    }

    /// European form `DD.MM.YYYY`.
    pub fn european(self) -> String {
        format!("{:02}.{:02}.{:04}", self.day, self.month, self.year)
    }

    /// Whole years from `self` to `later` (age on that date).
    pub fn years_until(self, later: Date) -> i32 {
        let mut years = later.year - self.year;
        if (later.month, later.day) < (self.month, self.day) {
            years -= 1;
        }
        years
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_known_dates() {
        assert_eq!(Date::from_days(0).da(), "19700101");
        assert_eq!(Date::from_days(19_723).da(), "20240101");
        assert_eq!(Date::from_days(-1).da(), "19691231");
        for d in (-40_000..40_000).step_by(37) {
            assert_eq!(Date::from_days(d).to_days(), d);
        }
        let leap = Date {
            year: 2024,
            month: 2,
            day: 29,
        };
        assert_eq!(Date::from_days(leap.to_days()), leap);
    }

    #[test]
    fn ages() {
        let b = Date {
            year: 1950,
            month: 6,
            day: 15,
        };
        assert_eq!(
            b.years_until(Date {
                year: 2020,
                month: 6,
                day: 14
            }),
            69
        );
        assert_eq!(
            b.years_until(Date {
                year: 2020,
                month: 6,
                day: 15
            }),
            70
        );
    }
}
