//! TEMPORARY STUB
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    Claude,
    OpenAi,
    Gemini,
    Http,
}
impl std::str::FromStr for Profile {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "claude" => Ok(Profile::Claude),
            "http" => Ok(Profile::Http),
            _ => Err(format!("unknown profile {s}")),
        }
    }
}
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    QuotaHit(QuotaHit),
    ServerError { matched_line: String },
    Other,
}
#[derive(Debug, Clone, PartialEq)]
pub struct QuotaHit {
    pub reset: Option<DateTime<Utc>>,
    pub matched_line: String,
    pub needs_attention: bool,
}
pub struct Classifier;
impl Classifier {
    pub fn new(_p: Profile, _q: &[String], _v: &[String]) -> Result<Classifier, String> {
        Ok(Classifier)
    }
    pub fn classify(&self, _o: &[u8], _e: &[u8], _c: Option<i32>, _n: DateTime<Utc>, _z: Tz) -> Outcome {
        Outcome::Other
    }
}
