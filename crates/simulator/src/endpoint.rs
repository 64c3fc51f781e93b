//! The endpoints the simulator serves, by the names scenarios and stats use.

use serde::{Deserialize, Serialize};

/// The API endpoints: the seed's three Silent Auth endpoints and the five Network Signals ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SimEndpoint {
    /// `GET /oauth2/authorize` (the device's call).
    Authorize,
    /// `POST /oauth2/token`.
    Token,
    /// `GET /oauth2/userinfo`.
    Userinfo,
    /// `POST /network-signal/v1/sim-swap/check`.
    SimSwapCheck,
    /// `POST /network-signal/v1/sim-swap/retrieve-date`.
    SimSwapRetrieveDate,
    /// `POST /network-signal/v1/device-swap/check`.
    DeviceSwapCheck,
    /// `POST /network-signal/v1/device-swap/retrieve-date`.
    DeviceSwapRetrieveDate,
    /// `POST /network-signal/v1/call-forwarding/unconditional/check`.
    CallForwardingCheck,
}

impl SimEndpoint {
    /// All endpoints, in a fixed order.
    pub const ALL: [SimEndpoint; 8] = [
        Self::Authorize,
        Self::Token,
        Self::Userinfo,
        Self::SimSwapCheck,
        Self::SimSwapRetrieveDate,
        Self::DeviceSwapCheck,
        Self::DeviceSwapRetrieveDate,
        Self::CallForwardingCheck,
    ];

    /// The snake_case name used in scenarios and stats.
    pub fn as_str(self) -> &'static str {
        match self {
            SimEndpoint::Authorize => "authorize",
            SimEndpoint::Token => "token",
            SimEndpoint::Userinfo => "userinfo",
            SimEndpoint::SimSwapCheck => "sim_swap_check",
            SimEndpoint::SimSwapRetrieveDate => "sim_swap_retrieve_date",
            SimEndpoint::DeviceSwapCheck => "device_swap_check",
            SimEndpoint::DeviceSwapRetrieveDate => "device_swap_retrieve_date",
            SimEndpoint::CallForwardingCheck => "call_forwarding_check",
        }
    }

    /// The endpoint named `name` (`"authorize"`, `"token"`, `"sim_swap_check"`, …).
    pub fn parse(name: &str) -> Option<SimEndpoint> {
        Self::ALL.into_iter().find(|e| e.as_str() == name)
    }

    /// Whether this is a Network Signals endpoint (CAMARA error bodies, requests about a number).
    pub fn is_signal(self) -> bool {
        !matches!(
            self,
            SimEndpoint::Authorize | SimEndpoint::Token | SimEndpoint::Userinfo
        )
    }
}
