//! rex security building blocks (issue 6): the partner configuration file, JWKS and JWT
//! (RS384/ES384, OpenSSL only), SMART Backend Services client assertions and token endpoint,
//! rex access tokens and staff (OIDC) tokens as a `Principal`, SMART scopes, token minting for
//! `rex token`/`rex send`, and the mTLS listener that identifies partners by their leaf
//! certificate. No HTTP routes and no SQL here: `rex-server` wires these in (see
//! `docs/security.md`).

pub mod assertion;
pub mod config;
pub mod encoding;
pub mod jcs;
pub mod jwk;
pub mod jwt;
pub mod mint;
pub mod mtls;
pub mod principal;
pub mod replay;
pub mod scope;
pub mod smart;
pub mod token;

pub use assertion::{AssertionError, CLIENT_ASSERTION_TYPE, validate_client_assertion};
pub use config::{AuthConfig, ConfigError, OidcConfig, Partner, PartnerRegistry};
pub use jwk::JwkSet;
pub use jwt::{Algorithm, JwtError};
pub use mint::{SigningKey, StaffTokenSpec, mint_client_assertion, mint_staff_token};
pub use mtls::{MtlsAcceptor, PeerIdentity, TlsError};
pub use principal::{AuthError, Authenticator, Principal, StaffRole, bearer_token};
pub use replay::{InMemoryReplayCache, ReplayCache};
pub use scope::{Interaction, Scope, ScopeSet};
pub use smart::smart_configuration;
pub use token::{OAuthError, OAuthErrorCode, TokenEndpoint, TokenRequest, TokenResponse, TokenSigner};

#[cfg(test)]
mod flow_tests;
#[cfg(any(test, feature = "test-util"))]
pub mod testutil;
