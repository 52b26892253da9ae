//! The one place that turns a handler's result into what Juju sees: an
//! action failure with a clear message, a `blocked` or `waiting` status for
//! what the user must fix or what must happen first (exit 0), or a non-zero
//! exit for a transient fault that Juju retries.

use std::process::ExitCode;

use crate::juju::{HookTools, Status, StatusKind};

/// Something only the user can fix; the message says what and how.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Blocked(pub String);

/// Something that must happen first (another unit, another hook); no fault.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Waiting(pub String);

/// Ends a hook: statuses for `Blocked`/`Waiting`, exit 1 for anything else.
pub fn finish_hook(tools: &dyn HookTools, result: anyhow::Result<()>) -> ExitCode {
    let Err(err) = result else {
        return ExitCode::SUCCESS;
    };
    let status = if let Some(blocked) = err.downcast_ref::<Blocked>() {
        Status::new(StatusKind::Blocked, &blocked.0)
    } else if let Some(waiting) = err.downcast_ref::<Waiting>() {
        Status::new(StatusKind::Waiting, &waiting.0)
    } else {
        tracing::error!("{err:#}");
        eprintln!("ERROR {err:#}");
        return ExitCode::FAILURE;
    };
    match tools.status_set(false, &status) {
        Ok(()) => ExitCode::SUCCESS,
        Err(set_err) => {
            eprintln!(
                "ERROR cannot set the unit status to {:?}: {set_err:#}",
                status.message
            );
            ExitCode::FAILURE
        }
    }
}

/// Ends an action: any error fails the action with its message, and the
/// process exits 0 so that Juju keeps what the action committed.
pub fn finish_action(tools: &dyn HookTools, result: anyhow::Result<()>) -> ExitCode {
    let Err(err) = result else {
        return ExitCode::SUCCESS;
    };
    let message = format!("{err:#}");
    tracing::warn!("action failed: {message}");
    match tools.action_fail(&message) {
        Ok(()) => ExitCode::SUCCESS,
        Err(fail_err) => {
            eprintln!("ERROR {message} (and action-fail failed too: {fail_err:#})");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::juju::fake::FakeTools;
    use anyhow::{anyhow, Context as _};

    #[test]
    fn blocked_sets_status_and_exits_zero() {
        let tools = FakeTools::new("postgresql/0", true);
        let code = finish_hook(&tools, Err(Blocked("fix the bucket".into()).into()));
        assert_eq!(code, ExitCode::SUCCESS);
        let status = tools.state.borrow().unit_status.clone().unwrap();
        assert_eq!(status, Status::new(StatusKind::Blocked, "fix the bucket"));
    }

    #[test]
    fn blocked_is_found_under_context() {
        let tools = FakeTools::new("postgresql/0", true);
        let err = anyhow::Error::from(Waiting("waiting for the leader".into())).context("outer");
        assert_eq!(finish_hook(&tools, Err(err)), ExitCode::SUCCESS);
        assert_eq!(
            tools.state.borrow().unit_status.as_ref().unwrap().kind,
            StatusKind::Waiting
        );
    }

    #[test]
    fn a_transient_fault_exits_non_zero_and_leaves_status() {
        let tools = FakeTools::new("postgresql/0", true);
        let code = finish_hook(&tools, Err(anyhow!("connection refused")));
        assert_eq!(code, ExitCode::FAILURE);
        assert!(tools.state.borrow().unit_status.is_none());
    }

    #[test]
    fn an_action_error_fails_the_action_with_the_whole_chain() {
        let tools = FakeTools::new("postgresql/0", true);
        let err: anyhow::Result<()> =
            Err(anyhow!("bucket missing")).context("cannot reach the repository");
        assert_eq!(finish_action(&tools, err), ExitCode::SUCCESS);
        assert_eq!(
            tools.state.borrow().failed.as_deref(),
            Some("cannot reach the repository: bucket missing")
        );
    }
}
