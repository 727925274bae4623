/**
 * Telemetry profiles: what a simulated sensor measures, as plausible values that change the way real ones do.
 * A profile is a small state machine driven by a seeded `Prng` and by simulated time (`next(dtMs)` advances
 * it by the nominal interval between readings, not by the wall clock), so the same seed gives the same readings
 * however fast or slow the messages actually leave.
 *
 * Readings, one JSON object per message (the device adds `seq` and `ts`):
 * - temperature `{celsius}`: a per-device base, a daily sine, a slow mean-reverting drift and sensor noise.
 * - humidity `{percent}`: the same shape around 35-65 %, clamped to 0-100.
 * - vibration `{rmsMmS, peakMmS}`: RMS velocity in mm/s (ISO 10816 range of a healthy machine) with occasional
 *   spikes, and the peak of the same window.
 * - battery `{percent, volts}`: a slow discharge with a Li-ion open-circuit voltage curve; a battery at 5 % is
 *   swapped for a full one.
 * - gps `{lat, lon, speedKmh, heading}`: a vehicle on a random walk (heading wanders, speed mean-reverts).
 */
import type { Prng } from './prng.ts';

export const PROFILE_NAMES = ['temperature', 'humidity', 'vibration', 'battery', 'gps'] as const;
export type ProfileName = (typeof PROFILE_NAMES)[number];

export type Reading = Record<string, number>;

export interface TelemetryProfile {
  /** The metric, the last level of the topic `telemetry/{deviceId}/{metric}`. */
  readonly metric: ProfileName;
  /** The next reading, `dtMs` of simulated time after the previous one. */
  next(dtMs: number): Reading;
}

const DAY_MS = 86_400_000;

export function isProfileName(name: string): name is ProfileName {
  return (PROFILE_NAMES as readonly string[]).includes(name);
}

/** The profile of device number `index`: round-robin over all profiles, or always `chosen`. */
export function profileNameFor(index: number, chosen?: ProfileName): ProfileName {
  return chosen ?? PROFILE_NAMES[index % PROFILE_NAMES.length];
}

export function createProfile(name: ProfileName, prng: Prng): TelemetryProfile {
  switch (name) {
    case 'temperature':
      return temperature(prng);
    case 'humidity':
      return humidity(prng);
    case 'vibration':
      return vibration(prng);
    case 'battery':
      return battery(prng);
    case 'gps':
      return gps(prng);
  }
}

/**
 * A mean-reverting random walk (Ornstein-Uhlenbeck): wanders with `sdPerSqrtS` per √second and is pulled back to
 * 0 with time constant `tauMs`, so its long-run standard deviation is sdPerSqrtS·√(tau/2).
 */
function drift(prng: Prng, tauMs: number, sdPerSqrtS: number): (dtMs: number) => number {
  let x = 0;
  return (dtMs) => {
    x -= x * Math.min(1, dtMs / tauMs);
    x += prng.normal(0, sdPerSqrtS * Math.sqrt(dtMs / 1000));
    return x;
  };
}

interface DailySignal {
  /** Per-device mean, drawn from this range. */
  base: readonly [number, number];
  /** Per-device amplitude of the daily sine, drawn from this range. */
  amplitude: readonly [number, number];
  /** Mean-reverting drift (time constant one hour), per √second. */
  driftPerSqrtS: number;
  /** Sensor noise, standard deviation. */
  noise: number;
  min: number;
  max: number;
  digits: number;
}

/**
 * A value that follows the day (a sine with a random phase, so devices do not all peak at the same moment), wanders
 * slowly around its base and carries sensor noise.
 */
function dailySignal(prng: Prng, s: DailySignal): (dtMs: number) => number {
  const base = prng.uniform(...s.base);
  const amplitude = prng.uniform(...s.amplitude);
  const phase = prng.next() * 2 * Math.PI;
  const wander = drift(prng, 3_600_000, s.driftPerSqrtS);
  let t = 0;
  return (dtMs) => {
    t += dtMs;
    const value = base + amplitude * Math.sin((2 * Math.PI * t) / DAY_MS + phase) + wander(dtMs) + prng.normal(0, s.noise);
    return round(clamp(value, s.min, s.max), s.digits);
  };
}

function temperature(prng: Prng): TelemetryProfile {
  const celsius = dailySignal(prng, { base: [16, 24], amplitude: [1.5, 4], driftPerSqrtS: 0.02, noise: 0.05, min: -40, max: 85, digits: 2 });
  return { metric: 'temperature', next: (dtMs) => ({ celsius: celsius(dtMs) }) };
}

function humidity(prng: Prng): TelemetryProfile {
  const percent = dailySignal(prng, { base: [35, 65], amplitude: [5, 12], driftPerSqrtS: 0.1, noise: 0.3, min: 0, max: 100, digits: 1 });
  return { metric: 'humidity', next: (dtMs) => ({ percent: percent(dtMs) }) };
}

function vibration(prng: Prng): TelemetryProfile {
  const baseline = prng.uniform(0.8, 2.5);
  const spikeChance = prng.uniform(0.005, 0.03);
  const wander = drift(prng, 600_000, 0.002);
  return {
    metric: 'vibration',
    next(dtMs) {
      // Log-normal noise keeps the RMS positive; a spike (a bearing knock, a loose mount) lasts one reading.
      let rms = baseline * Math.exp(wander(dtMs) + prng.normal(0, 0.08));
      if (prng.chance(spikeChance)) rms *= prng.uniform(4, 12);
      const crest = prng.uniform(1.4, 3);
      return { rmsMmS: round(rms, 3), peakMmS: round(rms * crest, 3) };
    },
  };
}

/** Open-circuit voltage of one Li-ion cell by state of charge (%), interpolated linearly between points. */
const LI_ION_OCV: readonly (readonly [number, number])[] = [
  [0, 3.3],
  [5, 3.5],
  [10, 3.6],
  [20, 3.7],
  [40, 3.78],
  [60, 3.87],
  [80, 4.0],
  [100, 4.2],
];

export function liIonVolts(percent: number): number {
  const p = clamp(percent, 0, 100);
  for (let i = 1; i < LI_ION_OCV.length; i++) {
    const [p1, v1] = LI_ION_OCV[i];
    if (p <= p1) {
      const [p0, v0] = LI_ION_OCV[i - 1];
      return v0 + ((v1 - v0) * (p - p0)) / (p1 - p0);
    }
  }
  return LI_ION_OCV[LI_ION_OCV.length - 1][1];
}

function battery(prng: Prng): TelemetryProfile {
  let percent = prng.uniform(55, 100);
  const percentPerHour = prng.uniform(0.5, 3);
  return {
    metric: 'battery',
    next(dtMs) {
      percent -= (percentPerHour * dtMs) / 3_600_000;
      if (percent <= 5) percent = 100;
      return { percent: round(percent, 2), volts: round(liIonVolts(percent) + prng.normal(0, 0.004), 3) };
    },
  };
}

const KM_PER_DEGREE = 111.32;

function gps(prng: Prng): TelemetryProfile {
  let lat = prng.uniform(-55, 65);
  let lon = prng.uniform(-180, 180);
  let heading = prng.uniform(0, 360);
  const cruise = prng.uniform(25, 90);
  let speed = cruise;
  return {
    metric: 'gps',
    next(dtMs) {
      const seconds = dtMs / 1000;
      speed = clamp(speed + (cruise - speed) * Math.min(1, seconds / 60) + prng.normal(0, 2 * Math.sqrt(seconds)), 0, 130);
      heading = (((heading + prng.normal(0, 4 * Math.sqrt(seconds))) % 360) + 360) % 360;
      const km = (speed * seconds) / 3600;
      const rad = (heading * Math.PI) / 180;
      lat += (km * Math.cos(rad)) / KM_PER_DEGREE;
      lon += (km * Math.sin(rad)) / (KM_PER_DEGREE * Math.max(0.01, Math.cos((lat * Math.PI) / 180)));
      if (lat > 85 || lat < -85) {
        // Turn back from the poles rather than cross them.
        lat = clamp(lat, -85, 85);
        heading = (540 - heading) % 360;
      }
      lon = ((((lon + 180) % 360) + 360) % 360) - 180;
      return { lat: round(lat, 6), lon: round(lon, 6), speedKmh: round(speed, 1), heading: round(heading, 1) % 360 };
    },
  };
}

function clamp(x: number, min: number, max: number): number {
  return x < min ? min : x > max ? max : x;
}

function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}
