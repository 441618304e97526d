//! Timestamps as deskew writes them: RFC 3339 in UTC with millisecond precision.

use std::fmt;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A point in time, serialised as RFC 3339 UTC (`2026-11-26T04:30:00.000Z`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub SystemTime);

impl Timestamp {
    /// The current time.
    pub fn now() -> Timestamp {
        Timestamp(SystemTime::now())
    }

    /// Parses RFC 3339 (`2026-11-26T04:30:00Z`).
    pub fn parse(s: &str) -> Result<Timestamp, humantime::TimestampError> {
        humantime::parse_rfc3339_weak(s).map(Timestamp)
    }

    /// How long ago this was, as seen at `now`; zero when it lies in the future.
    pub fn age_at(&self, now: Timestamp) -> Duration {
        now.0.duration_since(self.0).unwrap_or_default()
    }

    /// The compact UTC form used in release ids: `20261126T043000Z`.
    pub fn compact(&self) -> String {
        humantime::format_rfc3339_seconds(self.0).to_string().chars().filter(|c| *c != '-' && *c != ':').collect()
    }

    /// `self + d`.
    ///
    /// Saturates at the last second of year 9999, the latest time RFC 3339 can write.
    pub fn plus(&self, d: Duration) -> Timestamp {
        let latest = SystemTime::UNIX_EPOCH + Duration::from_secs(LATEST_SECS);
        Timestamp(self.0.checked_add(d).map_or(latest, |t| t.min(latest)))
    }

    /// How long after `earlier` this is; zero if it is not after it.
    pub fn since(&self, earlier: Timestamp) -> Duration {
        self.0.duration_since(earlier.0).unwrap_or_default()
    }

    /// `self - d`, saturating at the epoch.
    pub fn minus(&self, d: Duration) -> Timestamp {
        Timestamp(self.0.checked_sub(d).unwrap_or(SystemTime::UNIX_EPOCH))
    }
}

/// 9999-12-31T23:59:59Z.
const LATEST_SECS: u64 = 253_402_300_799;

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let latest = SystemTime::UNIX_EPOCH + Duration::from_secs(LATEST_SECS);
        write!(f, "{}", humantime::format_rfc3339_millis(self.0.min(latest)))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        let s = String::deserialize(d)?;
        Timestamp::parse(&s).map_err(|e| serde::de::Error::custom(format!("invalid timestamp `{s}`: {e}")))
    }
}

impl schemars::JsonSchema for Timestamp {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Timestamp".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "description": "RFC 3339 in UTC, milliseconds.", "type": "string", "format": "date-time" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_compacts() {
        let t = Timestamp::parse("2026-11-26T04:30:00Z").unwrap();
        assert_eq!(t.to_string(), "2026-11-26T04:30:00.000Z");
        assert_eq!(t.compact(), "20261126T043000Z");
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), t);
    }

    #[test]
    fn far_future_saturates_and_prints() {
        let t = Timestamp::parse("2026-11-26T04:30:00Z").unwrap();
        let far = t.plus(Duration::from_secs(u64::MAX / 4));
        assert_eq!(far.to_string(), "9999-12-31T23:59:59.000Z");
        assert!(far.since(t) > Duration::from_secs(200 * 365 * 86400));
    }
}
