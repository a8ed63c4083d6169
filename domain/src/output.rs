//! What a cluster's workloads print: the lines an agent ships for the workload it runs, and
//! what the cluster's renter reads back. Line ids are the agent's: increasing per device and
//! cluster across restarts of the agent (the time the capture began, in ms, × 10⁶ plus the
//! line's index), so a retried shipment is stored once and a reader's cursor only moves on.

use serde::{Deserialize, Serialize};

/// Lines one shipment may carry.
pub const MAX_LINES_PER_SHIPMENT: usize = 1_000;
/// The longest line kept; the agent cuts longer ones, the server cuts what still is.
pub const MAX_LINE_BYTES: usize = 8 * 1024;
/// Lines a renter reads at most at once.
pub const MAX_LINES_PER_READ: u32 = 2_000;

/// One line a workload printed, as the agent numbered it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ShippedLine {
    pub id: i64,
    pub text: String,
}

/// Lines of one cluster's workload on the shipping device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct OutputShipment {
    pub cluster_id: String,
    pub lines: Vec<ShippedLine>,
}

impl OutputShipment {
    /// What is wrong with the shipment as a whole, if anything (lines too long are cut, not
    /// refused: losing a renter's output helps no one).
    pub fn check(&self) -> Result<(), String> {
        if self.lines.len() > MAX_LINES_PER_SHIPMENT {
            return Err(format!(
                "a shipment carries at most {MAX_LINES_PER_SHIPMENT} lines, not {}",
                self.lines.len()
            ));
        }
        if self.lines.iter().any(|l| l.id < 0) {
            return Err("line ids are not negative".into());
        }
        Ok(())
    }
}

/// A line as stored: the text cut to [`MAX_LINE_BYTES`] on a character boundary, and NUL (which
/// text columns cannot hold) shown as U+FFFD.
pub fn stored_text(text: &str) -> String {
    cut(text, MAX_LINE_BYTES).replace('\0', "\u{FFFD}")
}

/// `text` cut to at most `max` bytes, on a character boundary.
pub fn cut(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// A line of a cluster's output, as the renter reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OutputLine {
    pub device_id: String,
    /// The line's id: pass the last one read as `since` to read on.
    pub line: i64,
    /// When the server received it (ms since the epoch).
    pub at: i64,
    pub text: String,
}

/// Lines of a cluster's output after a cursor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClusterOutput {
    pub lines: Vec<OutputLine>,
    /// Whether more lines follow the last one returned.
    pub more: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_lines_are_bounded_and_hold_no_nul() {
        assert_eq!(stored_text("a\0b"), "a\u{FFFD}b");
        assert_eq!(cut("héllo", 2), "h");
        let long = "é".repeat(MAX_LINE_BYTES);
        let stored = stored_text(&long);
        assert!(stored.len() <= MAX_LINE_BYTES && stored.len() >= MAX_LINE_BYTES - 1);
    }

    #[test]
    fn oversized_or_negative_shipments_are_refused() {
        let line = |id| ShippedLine {
            id,
            text: "x".into(),
        };
        let shipment = |lines| OutputShipment {
            cluster_id: "cl-1".into(),
            lines,
        };
        assert_eq!(shipment(vec![line(1), line(2)]).check(), Ok(()));
        assert!(shipment(vec![line(-1)]).check().is_err());
        assert!(
            shipment((0..=MAX_LINES_PER_SHIPMENT as i64).map(line).collect())
                .check()
                .is_err()
        );
    }
}
