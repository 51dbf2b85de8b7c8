// Times and durations as people read them.
import { useEffect, useState } from "react";

const SECOND = 1_000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

/** The current time, refreshed every `everyMs` so ages and countdowns move. */
export function useNow(everyMs = 1_000): number {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    const timer = setInterval(() => setNow(Date.now()), everyMs);
    return () => clearInterval(timer);
  }, [everyMs]);
  return now;
}

/** "45s", "12m", "3h 5m", "2d 4h". */
export function duration(ms: number): string {
  const abs = Math.max(0, Math.abs(ms));
  if (abs < MINUTE) return `${Math.floor(abs / SECOND)}s`;
  if (abs < HOUR) {
    const m = Math.floor(abs / MINUTE);
    const s = Math.floor((abs % MINUTE) / SECOND);
    return m < 10 && s ? `${m}m ${s}s` : `${m}m`;
  }
  if (abs < DAY) {
    const h = Math.floor(abs / HOUR);
    const m = Math.floor((abs % HOUR) / MINUTE);
    return m ? `${h}h ${m}m` : `${h}h`;
  }
  const d = Math.floor(abs / DAY);
  const h = Math.floor((abs % DAY) / HOUR);
  return h ? `${d}d ${h}h` : `${d}d`;
}

/** "just now", "5m ago", "in 3m". `now` is the page's last tick (it re-renders every few
 * seconds); an entry that arrived since is measured from the clock itself, never "in 10s". */
export function ago(iso: string, now: number): string {
  const diff = Math.max(now, Date.now()) - Date.parse(iso);
  if (Math.abs(diff) < 5 * SECOND) return "just now";
  return diff >= 0 ? `${duration(diff)} ago` : `in ${duration(diff)}`;
}

/** Time left before `iso`: "4m 12s left" or "expired". */
export function timeLeft(iso: string, now: number): { text: string; urgent: boolean; over: boolean } {
  const left = Date.parse(iso) - now;
  if (left <= 0) return { text: "expired", urgent: true, over: true };
  return { text: `${duration(left)} left`, urgent: left < 2 * MINUTE, over: false };
}

const clockFormat = new Intl.DateTimeFormat(undefined, {
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
});
const dayFormat = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric" });
const fullFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });

/** "14:25:03", preceded by the day when it is not today. */
export function clock(iso: string, now: number): string {
  const date = new Date(iso);
  const today = new Date(now);
  const sameDay = date.toDateString() === today.toDateString();
  return sameDay ? clockFormat.format(date) : `${dayFormat.format(date)} ${clockFormat.format(date)}`;
}

export function fullDate(iso: string): string {
  return fullFormat.format(new Date(iso));
}

/** "TOOL_CALLED" → "Tool called". */
export function humanize(value: string): string {
  const text = value.replace(/[_.]+/g, " ").toLowerCase();
  return text.charAt(0).toUpperCase() + text.slice(1);
}
