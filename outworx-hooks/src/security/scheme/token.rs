//! A shared token in a header, compared with the secret (GitLab).

use super::*;

/// Checks a delivery against the `Token` family.
pub(super) fn check_token(i: &Input<'_>, name: &str) -> Check {
    let Input { d, keys, .. } = *i;
    let token = header(d, name)?;
    let ok = keys.iter().any(|k| match k {
        Key::Secret(secret) => ct_eq_secret(token.as_bytes(), secret),
        #[allow(unreachable_patterns)]
        _ => false,
    });
    if ok {
        Ok(())
    } else {
        Err(Failure::new(
            FailureReason::HmacMismatch,
            format!("the `{name}` token does not equal any configured secret token"),
        ))
    }
}

/// Signs a body as the `Token` family does.
pub(super) fn sign_token(s: &mut SignCtx<'_>, header: &'static str) -> Result<(), SignError> {
    put(&mut s.headers, header, s.secret.trim().to_owned())?;
    Ok(())
}
