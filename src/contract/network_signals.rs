//! Network signals (docs/contract.md §4a): what a job may ask for (`signals`) and what its result
//! reports (`signals`, `risk_flags`). Both are additive to Job v1 and Result v1.

use crate::contract::error::ErrorInfo;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// `max_age_minutes` when a swap check names none (tyntec's default).
pub const DEFAULT_MAX_AGE_MINUTES: u32 = 240;
/// The largest `max_age_minutes` tyntec accepts.
pub const MAX_MAX_AGE_MINUTES: u32 = 2400;

/// The checks a job asks for. A check that is `None` (or `false`) is not run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SignalsRequest {
    /// `signals.sim_swap`.
    pub sim_swap: Option<SwapCheck>,
    /// `signals.device_swap`.
    pub device_swap: Option<SwapCheck>,
    /// `signals.call_forwarding` (unconditional forwarding).
    pub call_forwarding: bool,
}

impl SignalsRequest {
    /// True when no check this worker knows is asked for.
    pub fn is_empty(&self) -> bool {
        self.sim_swap.is_none() && self.device_swap.is_none() && !self.call_forwarding
    }
}

/// A SIM- or device-swap check: was there a swap within the last `max_age_minutes`?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SwapCheck {
    /// 1..=2400 minutes (the API counts minutes; CAMARA's SIM Swap API counts hours).
    pub max_age_minutes: u32,
}

impl Default for SwapCheck {
    fn default() -> Self {
        SwapCheck {
            max_age_minutes: DEFAULT_MAX_AGE_MINUTES,
        }
    }
}

/// What the checks found, one entry per check the job asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalsReport {
    /// The SIM-swap check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sim_swap: Option<SwapSignal>,
    /// The device-swap check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_swap: Option<SwapSignal>,
    /// The unconditional call-forwarding check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_forwarding: Option<ForwardingSignal>,
}

impl SignalsReport {
    /// The flags a fraud pipeline must look at, in the order of [`RiskFlag`]: a risk each check
    /// found, then each check that could not be answered (`failed` or `inconclusive`), so that
    /// "could not check" never reads as "checked, clean" to a consumer of the flags alone.
    pub fn risk_flags(&self) -> Vec<RiskFlag> {
        let sim = self.sim_swap.as_ref().map(|s| s.outcome);
        let device = self.device_swap.as_ref().map(|s| s.outcome);
        let forwarding = self.call_forwarding.as_ref().map(|s| s.outcome);
        let unchecked = |o: Option<SwapOutcome>| {
            matches!(o, Some(SwapOutcome::Failed | SwapOutcome::Inconclusive))
        };
        [
            (sim == Some(SwapOutcome::Swapped), RiskFlag::RecentSimSwap),
            (
                device == Some(SwapOutcome::Swapped),
                RiskFlag::RecentDeviceSwap,
            ),
            (
                forwarding == Some(ForwardingOutcome::Active),
                RiskFlag::CallForwardingActive,
            ),
            (unchecked(sim), RiskFlag::SimSwapUnchecked),
            (unchecked(device), RiskFlag::DeviceSwapUnchecked),
            (
                matches!(
                    forwarding,
                    Some(ForwardingOutcome::Failed | ForwardingOutcome::Inconclusive)
                ),
                RiskFlag::CallForwardingUnchecked,
            ),
        ]
        .into_iter()
        .filter_map(|(set, flag)| set.then_some(flag))
        .collect()
    }

    /// The errors of the checks that failed.
    pub fn errors(&self) -> impl Iterator<Item = &ErrorInfo> {
        let swaps = [&self.sim_swap, &self.device_swap]
            .into_iter()
            .flatten()
            .filter_map(|s| s.error.as_ref());
        swaps.chain(self.call_forwarding.iter().filter_map(|s| s.error.as_ref()))
    }
}

/// The outcome of a SIM- or device-swap check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwapSignal {
    /// What the operator said.
    pub outcome: SwapOutcome,
    /// The latest swap (asked for only when the check says `swapped`), else null.
    pub latest_change: Option<DateTime<Utc>>,
    /// The window the check covered.
    pub max_age_minutes: u32,
    /// Set when `outcome` is `failed`: the class of docs/contract.md §5.
    pub error: Option<ErrorInfo>,
}

/// A swap check's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SwapOutcome {
    /// A swap within `max_age_minutes`.
    Swapped,
    /// No swap within `max_age_minutes`.
    NotSwapped,
    /// The operator has no data for the number (404).
    Inconclusive,
    /// The check could not be made: see `error`.
    Failed,
}

impl SwapOutcome {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            SwapOutcome::Swapped => "swapped",
            SwapOutcome::NotSwapped => "not_swapped",
            SwapOutcome::Inconclusive => "inconclusive",
            SwapOutcome::Failed => "failed",
        }
    }
}

/// The outcome of the call-forwarding check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardingSignal {
    /// What the operator said.
    pub outcome: ForwardingOutcome,
    /// Set when `outcome` is `failed`.
    pub error: Option<ErrorInfo>,
}

/// The call-forwarding check's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ForwardingOutcome {
    /// Unconditional call forwarding is on.
    Active,
    /// It is off.
    Inactive,
    /// The operator has no data for the number (404).
    Inconclusive,
    /// The check could not be made: see `error`.
    Failed,
}

impl ForwardingOutcome {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ForwardingOutcome::Active => "active",
            ForwardingOutcome::Inactive => "inactive",
            ForwardingOutcome::Inconclusive => "inconclusive",
            ForwardingOutcome::Failed => "failed",
        }
    }
}

/// What a fraud pipeline must look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RiskFlag {
    /// The SIM check found a swap within its window.
    RecentSimSwap,
    /// The device check found a swap within its window.
    RecentDeviceSwap,
    /// Unconditional call forwarding is active.
    CallForwardingActive,
    /// The SIM-swap check could not be answered (`failed` or `inconclusive`).
    SimSwapUnchecked,
    /// The device-swap check could not be answered.
    DeviceSwapUnchecked,
    /// The call-forwarding check could not be answered.
    CallForwardingUnchecked,
}

impl RiskFlag {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            RiskFlag::RecentSimSwap => "recent_sim_swap",
            RiskFlag::RecentDeviceSwap => "recent_device_swap",
            RiskFlag::CallForwardingActive => "call_forwarding_active",
            RiskFlag::SimSwapUnchecked => "sim_swap_unchecked",
            RiskFlag::DeviceSwapUnchecked => "device_swap_unchecked",
            RiskFlag::CallForwardingUnchecked => "call_forwarding_unchecked",
        }
    }
}

/// The E.164 form (`+` and digits) the Network Signals API wants, from a job's `login_hint`
/// (8..15 digits with an optional `+`; a `00` international prefix without `+` is dropped).
pub fn e164(login_hint: &str) -> String {
    let digits: String = login_hint.chars().filter(char::is_ascii_digit).collect();
    let national = match digits.strip_prefix("00") {
        Some(rest) if !login_hint.starts_with('+') => rest,
        _ => digits.as_str(),
    };
    format!("+{national}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::{ErrorClass, Stage};

    fn swap(outcome: SwapOutcome) -> Option<SwapSignal> {
        Some(SwapSignal {
            outcome,
            latest_change: None,
            max_age_minutes: 240,
            error: None,
        })
    }

    #[test]
    fn phone_numbers_go_out_in_e164() {
        assert_eq!(e164("381123456789"), "+381123456789");
        assert_eq!(e164("+4915112345678"), "+4915112345678");
        assert_eq!(e164("004915112345678"), "+4915112345678");
    }

    #[test]
    fn risk_flags_follow_the_outcomes() {
        let report = SignalsReport {
            sim_swap: swap(SwapOutcome::Swapped),
            device_swap: swap(SwapOutcome::Inconclusive),
            call_forwarding: Some(ForwardingSignal {
                outcome: ForwardingOutcome::Active,
                error: None,
            }),
        };
        assert_eq!(
            report.risk_flags(),
            [
                RiskFlag::RecentSimSwap,
                RiskFlag::CallForwardingActive,
                RiskFlag::DeviceSwapUnchecked
            ]
        );
        let calm = SignalsReport {
            sim_swap: swap(SwapOutcome::NotSwapped),
            device_swap: swap(SwapOutcome::NotSwapped),
            call_forwarding: Some(ForwardingSignal {
                outcome: ForwardingOutcome::Inactive,
                error: None,
            }),
        };
        assert!(calm.risk_flags().is_empty());
        assert!(SignalsReport::default().risk_flags().is_empty());
    }

    #[test]
    fn a_check_that_could_not_be_answered_is_flagged_never_clean() {
        for sim in [SwapOutcome::Failed, SwapOutcome::Inconclusive] {
            for forwarding in [ForwardingOutcome::Failed, ForwardingOutcome::Inconclusive] {
                let report = SignalsReport {
                    sim_swap: swap(sim),
                    device_swap: swap(sim),
                    call_forwarding: Some(ForwardingSignal {
                        outcome: forwarding,
                        error: None,
                    }),
                };
                assert_eq!(
                    report.risk_flags(),
                    [
                        RiskFlag::SimSwapUnchecked,
                        RiskFlag::DeviceSwapUnchecked,
                        RiskFlag::CallForwardingUnchecked
                    ],
                    "{sim:?} {forwarding:?}"
                );
            }
        }
        // Only the checks asked for can be unchecked.
        let one = SignalsReport {
            sim_swap: None,
            device_swap: swap(SwapOutcome::Failed),
            call_forwarding: None,
        };
        assert_eq!(one.risk_flags(), [RiskFlag::DeviceSwapUnchecked]);
    }

    #[test]
    fn the_report_serializes_only_requested_checks() {
        let mut failed = swap(SwapOutcome::Failed).unwrap();
        failed.error = Some(ErrorInfo::new(
            ErrorClass::UpstreamUnavailable,
            Stage::DeviceSwap,
            "down",
        ));
        let report = SignalsReport {
            sim_swap: None,
            device_swap: Some(failed),
            call_forwarding: None,
        };
        let v = serde_json::to_value(&report).unwrap();
        assert_eq!(v.as_object().unwrap().len(), 1);
        assert_eq!(v["device_swap"]["outcome"], "failed");
        assert_eq!(v["device_swap"]["error"]["class"], "upstream_unavailable");
        assert_eq!(v["device_swap"]["error"]["stage"], "device_swap");
        assert_eq!(report.errors().count(), 1);
        let back: SignalsReport = serde_json::from_value(v).unwrap();
        assert_eq!(back, report);
    }
}
