//! The generalist's tasks and the class labels its DiT is conditioned on: the one place a task's
//! name and labels are written (the pipeline, the command line and the fixtures use these).

/// The first task label; `conv_in_{j}` serves label `FIRST_TASK_LABEL + j - 1`.
pub const FIRST_TASK_LABEL: i64 = 1000;

/// A task of the generalist.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Task {
    Depth,
    Flow,
    Segment,
}

impl Task {
    pub const ALL: [Task; 3] = [Task::Depth, Task::Flow, Task::Segment];

    /// The task's name on the command line and in run records and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Task::Depth => "depth",
            Task::Flow => "flow",
            Task::Segment => "segment",
        }
    }

    /// The task named `name` (as `name` writes it).
    pub fn from_name(name: &str) -> Option<Task> {
        Task::ALL.into_iter().find(|t| t.name() == name)
    }

    /// The labels the DiT denoises this task's parts under, one per part: depth and amodal
    /// segmentation are one latent each, flow is two (its x and its y component, in that order).
    pub fn labels(self) -> &'static [i64] {
        const DEPTH: i64 = FIRST_TASK_LABEL;
        const SEGMENT: i64 = FIRST_TASK_LABEL + 1;
        const FLOW_X: i64 = FIRST_TASK_LABEL + 2;
        const FLOW_Y: i64 = FIRST_TASK_LABEL + 3;
        match self {
            Task::Depth => &[DEPTH],
            Task::Segment => &[SEGMENT],
            Task::Flow => &[FLOW_X, FLOW_Y],
        }
    }

    /// The label of a one-part task's latent (flow: its x part).
    pub fn label(self) -> i64 {
        self.labels()[0]
    }
}

impl std::fmt::Display for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name()) // honours width and alignment, as `{:<8}` in tables
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_the_published_ones() {
        // The authors' training code: depth 1000, segmentation 1001, flow x 1002, flow y 1003.
        assert_eq!(Task::Depth.labels(), &[1000]);
        assert_eq!(Task::Segment.labels(), &[1001]);
        assert_eq!(Task::Flow.labels(), &[1002, 1003]);
        for t in Task::ALL {
            assert_eq!(Task::from_name(t.name()), Some(t));
        }
        assert_eq!(Task::from_name("amodal"), None);
    }
}
