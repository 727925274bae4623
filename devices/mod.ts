/**
 * The device simulator: a fleet of MQTT devices that publish plausible telemetry to an edge node, seeded so that
 * runs repeat. `tributary simulate` (main.ts) runs one from the command line.
 */
export { Fleet } from './fleet.ts';
export type { FleetOptions, FleetStats } from './fleet.ts';
export { SimulatedDevice } from './simulated-device.ts';
export type { DeviceCounters, DeviceHooks, SimulatedDeviceOptions } from './simulated-device.ts';
export { createProfile, isProfileName, liIonVolts, PROFILE_NAMES, profileNameFor } from './profiles.ts';
export type { ProfileName, Reading, TelemetryProfile } from './profiles.ts';
export { deriveSeed, Prng } from './prng.ts';
export { DupFlagStore } from './dup-flag-store.ts';
export type { DupFlagStoreOptions } from './dup-flag-store.ts';
export { Scheduler } from './scheduler.ts';
export type { ScheduledTask, SchedulerOptions } from './scheduler.ts';
export { RateMeter } from './rate-meter.ts';
export { openAckFile } from './ack-file.ts';
export type { AckFile } from './ack-file.ts';
export { simulatorConfigSchema, simulatorFlags, toFleetOptions } from './config.ts';
export type { SimulatorConfig } from './config.ts';
