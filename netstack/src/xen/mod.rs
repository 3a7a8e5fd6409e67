//! The parts of a Xen guest's PV drivers that are plain protocol logic, kept here so they can
//! be tested on the host against in-process models: the xenstore wire protocol
//! ([`xenstore`], `io/xs_wire.h`) and the netif shared rings ([`netif`], `io/ring.h`,
//! `io/netif.h`). The unikernel (`images/src/xen/`) supplies the shared memory and the
//! hypercalls behind the traits.

pub mod netif;
pub mod xenstore;
