//! Inbound (ESP) SPIs are ours to choose and must be unique across the gateway: the
//! datapath finds an inbound SA by SPI alone. The registry knows every inbound SPI the
//! datapath holds (from the `InstallInbound` / `Remove` commands the endpoint emits) and
//! the last ones handed out for exchanges still in flight, and draws new ones outside both.

use ipsec_types::{DatapathCommand, Direction, Spi};
use std::collections::{HashSet, VecDeque};

/// SPIs handed out but maybe not installed yet (a CREATE_CHILD_SA in flight) are kept
/// this many allocations back; an exchange outlives far fewer allocations than this.
const RECENT: usize = 4096;

#[derive(Default, Debug)]
pub(crate) struct SpiRegistry {
    installed: HashSet<u32>,
    recent: VecDeque<u32>,
    recent_set: HashSet<u32>,
}

impl SpiRegistry {
    /// Whether `spi` may be handed out.
    pub(crate) fn is_free(&self, spi: u32) -> bool {
        spi > 255 && !self.installed.contains(&spi) && !self.recent_set.contains(&spi)
    }

    /// Records `spi` as handed out.
    pub(crate) fn take(&mut self, spi: u32) {
        if self.recent.len() >= RECENT {
            if let Some(old) = self.recent.pop_front() {
                self.recent_set.remove(&old);
            }
        }
        self.recent.push_back(spi);
        self.recent_set.insert(spi);
    }

    /// Follows a datapath command the endpoint emitted.
    pub(crate) fn observe(&mut self, cmd: &DatapathCommand) {
        match cmd {
            DatapathCommand::InstallInbound(p) => {
                self.installed.insert(p.spi.0);
            }
            DatapathCommand::Remove { spi: Spi(s), direction: Direction::Inbound, .. } => {
                self.installed.remove(s);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installed_and_recent_spis_are_not_free() {
        let mut r = SpiRegistry::default();
        assert!(!r.is_free(255));
        assert!(r.is_free(1000));
        r.take(1000);
        assert!(!r.is_free(1000));
        for s in 0..RECENT as u32 {
            r.take(10_000 + s);
        }
        assert!(r.is_free(1000), "forgotten after RECENT allocations");
        r.observe(&DatapathCommand::Remove { tunnel: "t".into(), spi: Spi(10_000), direction: Direction::Inbound });
        assert!(!r.is_free(10_001), "still recent");
    }
}
