//! Open enumerations of the protocol: task statuses, error codes, commands, ignored
//! reasons, job statuses.
//!
//! Each enum names the values RXON 1.0b3 and 1.0b17 define and keeps any other value in an
//! `Other(String)` variant, so a code introduced by a newer peer survives a decode and
//! re-encode unchanged instead of failing the whole message.

use std::fmt;
use std::str::FromStr;

macro_rules! open_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $wire:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )*
            /// A value this version does not know, kept verbatim.
            Other(String),
        }

        impl $name {
            /// Every value this version knows, in declaration order.
            pub const KNOWN: &'static [$name] = &[$($name::$variant),*];

            /// The wire spelling.
            pub fn as_str(&self) -> &str {
                match self {
                    $( $name::$variant => $wire, )*
                    $name::Other(s) => s,
                }
            }

            /// `true` unless this is [`Self::Other`].
            pub fn is_known(&self) -> bool {
                !matches!(self, $name::Other(_))
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                match s {
                    $( $wire => $name::$variant, )*
                    other => $name::Other(other.to_owned()),
                }
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                match s.as_str() {
                    $( $wire => $name::$variant, )*
                    _ => $name::Other(s),
                }
            }
        }

        impl FromStr for $name {
            type Err = std::convert::Infallible;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Ok(Self::from(s))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.as_str() == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }

        #[cfg(feature = "serde")]
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        #[cfg(feature = "serde")]
        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                String::deserialize(d).map($name::from)
            }
        }
    };
}

open_enum! {
    /// Outcome of a task as the worker reports it in [`TaskResult::status`](crate::TaskResult::status).
    pub enum TaskStatus {
        /// The task finished and `data` holds its output.
        Success = "success",
        /// The task failed; `error` says why.
        Failure = "failure",
        /// The task was cancelled before it finished.
        Cancelled = "cancelled",
    }
}

open_enum! {
    /// Standard error codes a worker puts in [`TaskError::code`](crate::TaskError::code).
    pub enum ErrorCode {
        /// A failure that may succeed on retry (network blip, busy dependency).
        Transient = "TRANSIENT_ERROR",
        /// A failure that will not succeed on retry.
        Permanent = "PERMANENT_ERROR",
        /// The task's parameters are invalid.
        InvalidInput = "INVALID_INPUT_ERROR",
        /// Downloaded or produced data failed an integrity check.
        IntegrityMismatch = "INTEGRITY_MISMATCH_ERROR",
        /// The worker could not finish in time.
        Timeout = "TIMEOUT_ERROR",
        /// The orchestrator refused the result because its deadline had passed.
        LateResult = "LATE_RESULT",
        /// Transient lack of local resources (memory, GPU, disk).
        ResourceExhausted = "RESOURCE_EXHAUSTED_ERROR",
        /// A dependency of the task failed.
        Dependency = "DEPENDENCY_ERROR",
        /// The task was refused for security reasons.
        Security = "SECURITY_ERROR",
        /// A bug or unexpected state in the worker.
        Internal = "INTERNAL_ERROR",
        /// The peer is over its rate limit (1.0b17).
        LimitExceeded = "LIMIT_EXCEEDED_ERROR",
        /// A result or event broke the skill's declared contract (1.0b17).
        ContractViolation = "CONTRACT_VIOLATION_ERROR",
        /// Something the task needs is not installed (1.0b17).
        DependencyMissing = "DEPENDENCY_MISSING_ERROR",
    }
}

impl Default for TaskStatus {
    /// `success`: the 1.0b17 default of a result without `status`.
    fn default() -> Self {
        TaskStatus::Success
    }
}

impl TaskStatus {
    /// `true` for [`TaskStatus::Success`].
    pub fn is_success(&self) -> bool {
        matches!(self, TaskStatus::Success)
    }
}

impl ErrorCode {
    /// `true` for codes that mean "the same task may succeed if tried again".
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ErrorCode::Transient | ErrorCode::ResourceExhausted | ErrorCode::Timeout
        )
    }
}

open_enum! {
    /// Commands the orchestrator sends down a worker's command channel.
    pub enum CommandName {
        /// Stop working on `task_id` and report it cancelled.
        CancelTask = "cancel_task",
    }
}

open_enum! {
    /// Why an orchestrator ignored a result (`{"status":"ignored","reason":...}`).
    pub enum IgnoredReason {
        /// The task's deadline passed before the result arrived.
        DeadlineExceeded = "deadline_exceeded",
        /// The job was cancelled.
        JobCancelled = "job_cancelled",
        /// The orchestrator knows no such job or task.
        JobNotFound = "job_not_found",
        /// The task is assigned to another worker.
        WorkerMismatch = "worker_mismatch",
        /// The task was reassigned or the job moved on.
        StaleTask = "stale_task",
        /// The job had already ended (1.0b17).
        JobAlreadyTerminated = "job_already_terminated",
        /// The orchestrator's middleware refused the result (1.0b17).
        MiddlewareError = "middleware_error",
    }
}

open_enum! {
    /// Lifecycle states of a job on the orchestrator.
    pub enum JobStatus {
        /// Accepted, not yet scheduled.
        Pending = "pending",
        /// Waiting for a worker with the right skill.
        WaitingForWorker = "waiting_for_worker",
        /// A worker is executing it.
        Running = "running",
        /// Completed successfully.
        Finished = "finished",
        /// Completed with a task failure.
        Failed = "failed",
        /// Stopped by an orchestrator error.
        Error = "error",
        /// Set aside after repeated failures.
        Quarantined = "quarantined",
        /// Cancelled by a client.
        Cancelled = "cancelled",
        /// Paused for a human decision.
        WaitingForHuman = "waiting_for_human",
        /// Waiting for parallel branches to finish.
        WaitingForParallelTasks = "waiting_for_parallel_tasks",
    }
}

impl JobStatus {
    /// `true` for states a job never leaves.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            JobStatus::Finished
                | JobStatus::Failed
                | JobStatus::Error
                | JobStatus::Quarantined
                | JobStatus::Cancelled
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values_round_trip_through_their_wire_names() {
        for code in ErrorCode::KNOWN {
            assert_eq!(&ErrorCode::from(code.as_str()), code);
            assert!(code.is_known());
        }
        for s in TaskStatus::KNOWN {
            assert_eq!(
                &s.as_str()
                    .parse::<TaskStatus>()
                    .unwrap_or(TaskStatus::Success),
                s
            );
        }
        assert_eq!(ErrorCode::KNOWN.len(), 13);
        assert_eq!(JobStatus::KNOWN.len(), 10);
        assert_eq!(IgnoredReason::KNOWN.len(), 7);
    }

    #[test]
    fn unknown_values_are_kept_verbatim() {
        let r = IgnoredReason::from("job_paused");
        assert_eq!(r, IgnoredReason::Other("job_paused".into()));
        assert_eq!(r.as_str(), "job_paused");
        assert!(!r.is_known());
        assert_eq!(r.to_string(), "job_paused");
        // Wire names are case-sensitive, as in the reference.
        assert!(!TaskStatus::from("SUCCESS").is_known());
    }

    #[test]
    fn classification_helpers() {
        assert!(ErrorCode::Transient.is_transient());
        assert!(!ErrorCode::Permanent.is_transient());
        assert!(JobStatus::Cancelled.is_terminal());
        assert!(!JobStatus::Running.is_terminal());
        assert!(!JobStatus::Other("finished_later".into()).is_terminal());
        assert_eq!(CommandName::CancelTask, "cancel_task");
    }
}
