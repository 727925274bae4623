import { describe, expect, it } from 'vitest';
import { createProfile, liIonVolts, PROFILE_NAMES, profileNameFor } from '../../devices/profiles.ts';
import type { ProfileName, Reading } from '../../devices/profiles.ts';
import { Prng } from '../../devices/prng.ts';

function readings(name: ProfileName, seed: number, n: number, dtMs: number): Reading[] {
  const profile = createProfile(name, new Prng(seed));
  return Array.from({ length: n }, () => profile.next(dtMs));
}

function column(rs: Reading[], key: string): number[] {
  return rs.map((r) => r[key]);
}

const MINUTE = 60_000;

describe('profiles', () => {
  it.each(PROFILE_NAMES)('%s gives the same readings for the same seed and others for another seed', (name) => {
    expect(readings(name, 9, 500, 1000)).toEqual(readings(name, 9, 500, 1000));
    expect(readings(name, 9, 500, 1000)).not.toEqual(readings(name, 10, 500, 1000));
  });

  it.each(PROFILE_NAMES)('%s readings are finite numbers that survive JSON', (name) => {
    for (const reading of readings(name, 1, 2000, 1000)) {
      for (const value of Object.values(reading)) expect(Number.isFinite(value)).toBe(true);
      expect(JSON.parse(JSON.stringify(reading))).toEqual(reading);
    }
  });

  it('temperature stays plausible, moves smoothly and follows a daily cycle', () => {
    for (let seed = 1; seed <= 20; seed++) {
      const day = column(readings('temperature', seed, 24 * 60, MINUTE), 'celsius');
      expect(Math.min(...day)).toBeGreaterThan(5);
      expect(Math.max(...day)).toBeLessThan(35);
      // The daily sine has an amplitude of at least 1.5 °C.
      expect(Math.max(...day) - Math.min(...day)).toBeGreaterThan(2);
      const seconds = column(readings('temperature', seed, 600, 1000), 'celsius');
      for (let i = 1; i < seconds.length; i++) expect(Math.abs(seconds[i] - seconds[i - 1])).toBeLessThan(1);
    }
  });

  it('humidity is a percentage', () => {
    for (let seed = 1; seed <= 20; seed++) {
      const values = column(readings('humidity', seed, 24 * 60, MINUTE), 'percent');
      expect(Math.min(...values)).toBeGreaterThanOrEqual(0);
      expect(Math.max(...values)).toBeLessThanOrEqual(100);
    }
  });

  it('vibration has a positive RMS below its peak, and occasional spikes', () => {
    const rs = readings('vibration', 4, 5000, 1000);
    const rms = column(rs, 'rmsMmS');
    for (const r of rs) {
      expect(r.rmsMmS).toBeGreaterThan(0);
      expect(r.peakMmS).toBeGreaterThanOrEqual(r.rmsMmS);
    }
    const median = [...rms].sort((a, b) => a - b)[rms.length >> 1];
    const spikes = rms.filter((x) => x > 3 * median).length;
    expect(spikes).toBeGreaterThan(5);
    expect(spikes).toBeLessThan(rms.length * 0.05);
  });

  it('battery discharges slowly, with a voltage that follows the charge, and is swapped when empty', () => {
    const rs = readings('battery', 2, 200 * 60, MINUTE); // 200 simulated hours
    let swaps = 0;
    for (let i = 1; i < rs.length; i++) {
      const drop = rs[i - 1].percent - rs[i].percent;
      if (drop < 0) {
        swaps++;
        expect(rs[i].percent).toBeGreaterThan(99);
      } else {
        expect(drop).toBeLessThan(0.1);
      }
    }
    expect(swaps).toBeGreaterThan(0);
    for (const r of rs) {
      expect(r.percent).toBeGreaterThanOrEqual(5);
      expect(r.percent).toBeLessThanOrEqual(100);
      expect(Math.abs(r.volts - liIonVolts(r.percent))).toBeLessThan(0.03);
    }
  });

  it('liIonVolts rises with the charge from 3.3 V to 4.2 V', () => {
    expect(liIonVolts(0)).toBe(3.3);
    expect(liIonVolts(100)).toBe(4.2);
    for (let p = 1; p <= 100; p++) expect(liIonVolts(p)).toBeGreaterThan(liIonVolts(p - 1));
  });

  it('gps moves no faster than its reported speed, on valid coordinates', () => {
    for (let seed = 1; seed <= 10; seed++) {
      const rs = readings('gps', seed, 3000, 1000);
      const invalid = rs.filter(
        (r) => Math.abs(r.lat) > 85 || r.lon < -180 || r.lon > 180 || r.speedKmh < 0 || r.speedKmh > 130 || r.heading < 0 || r.heading >= 360,
      );
      expect(invalid).toEqual([]);
      const tooFar = rs.slice(1).filter((r, i) => haversineKm(rs[i], r) > (r.speedKmh / 3600) * 1.01 + 0.001);
      expect(tooFar).toEqual([]);
      // It does get somewhere (50 minutes at 25-90 km/h, on a wandering heading).
      expect(haversineKm(rs[0], rs[rs.length - 1])).toBeGreaterThan(0.5);
    }
  });

  it('assigns profiles round-robin unless one is chosen', () => {
    expect(Array.from({ length: 7 }, (_, i) => profileNameFor(i))).toEqual([...PROFILE_NAMES, 'temperature', 'humidity']);
    expect(profileNameFor(3, 'gps')).toBe('gps');
  });
});

function haversineKm(a: Reading, b: Reading): number {
  const rad = Math.PI / 180;
  const dLat = (b.lat - a.lat) * rad;
  const dLon = (b.lon - a.lon) * rad;
  const h = Math.sin(dLat / 2) ** 2 + Math.cos(a.lat * rad) * Math.cos(b.lat * rad) * Math.sin(dLon / 2) ** 2;
  return 2 * 6371 * Math.asin(Math.sqrt(h));
}
