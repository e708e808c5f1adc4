//! `GET /.well-known/smart-configuration` for SMART Backend Services clients.

use serde_json::{Value, json};

use crate::config::PartnerRegistry;

/// The SMART configuration document. `token_url` must be the exact URL partners put in their
/// assertions' `aud`. `scopes_supported` lists the distinct scopes configured for partners.
pub fn smart_configuration(token_url: &str, partners: &PartnerRegistry) -> Value {
    let mut scopes: Vec<String> = Vec::new();
    for scope in partners.iter().flat_map(|p| p.scopes.iter()) {
        if !scopes.iter().any(|s| s == scope.as_str()) {
            scopes.push(scope.as_str().to_owned());
        }
    }
    json!({
        "token_endpoint": token_url,
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
        "scopes_supported": scopes,
        "capabilities": ["client-confidential-asymmetric", "permission-v1", "permission-v2"],
    })
}
