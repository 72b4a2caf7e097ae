//! One outbound SA in the seal path per tunnel. The datapath seals with the outbound
//! SA installed last (older ones of the same selectors leave the seal path). When that
//! one is removed while another CHILD SA of the tunnel still has its outbound SA
//! installed (duplicate IKE SAs after a simultaneous initiation or a restart, a CHILD
//! SA deleted by the peer while an older one still lives), the newest remaining one is
//! installed again so traffic keeps flowing.
//!
//! It looks only at the datapath commands an input produced; it makes no protocol
//! decisions.

use super::{Endpoint, Output};
use ipsec_types::{DatapathCommand, Direction};

impl Endpoint {
    /// Follows the outbound installs and removals queued since `mark` and puts an
    /// outbound SA back in use where a tunnel lost the one it sealed with.
    pub(super) fn keep_outbound(&mut self, mark: usize) {
        let mut i = mark;
        while i < self.shared.out.len() {
            let (installed, removed) = match self.shared.out.get(i) {
                Some(Output::Datapath(DatapathCommand::InstallOutbound(p))) => {
                    (Some((p.child.tunnel.clone(), p.spi)), None)
                }
                Some(Output::Datapath(DatapathCommand::Remove { tunnel, spi, direction: Direction::Outbound })) => {
                    (None, Some((tunnel.clone(), *spi)))
                }
                _ => (None, None),
            };
            i += 1;
            if let Some((tunnel, spi)) = installed {
                self.active_out.insert(tunnel, spi);
                continue;
            }
            // Outbound SPIs are the peers' choice: only (tunnel, SPI) names an SA.
            let Some((tunnel, spi)) = removed else { continue };
            if self.active_out.get(&tunnel) != Some(&spi) {
                continue;
            }
            self.active_out.remove(&tunnel);
            let next = self
                .sas
                .iter()
                .filter(|s| s.peer.name == tunnel)
                .flat_map(|s| s.children.iter())
                .filter(|c| c.spi_out != spi)
                .filter_map(|c| c.halves.outbound().map(|p| (c.child_id, p)))
                .max_by_key(|(id, _)| *id)
                .map(|(_, p)| p.clone());
            if let Some(p) = next {
                tracing::info!(tunnel = %tunnel, spi_out = %p.spi, "the outbound SA in use went away; sealing with another CHILD SA of the tunnel");
                self.shared.out.insert(i, Output::Datapath(DatapathCommand::InstallOutbound(p)));
            }
        }
    }
}
