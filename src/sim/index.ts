// The deterministic simulator: virtual clock and simulated network. Re-exports only.

export { SimClock } from './sim-clock';
export type { SimClockOptions, SimClockRunOptions, SimClockRunUntilOptions } from './sim-clock';
export { HOST_CRASHED, SimNetwork, SimNetworkNode, SimWire } from './network';
export type {
  LinkOptions,
  LinkSettings,
  PartitionDirection,
  PartitionOptions,
  SimNetworkCounters,
  SimNetworkOptions,
} from './network';
