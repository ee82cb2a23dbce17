// The cue of a new incident: a short WebAudio beep (no sound files) and the count in the tab title.
let audio = null;
let muted = localStorage.getItem("console.muted") === "1";
// The most urgent cue that rang while the browser kept the sound off: it is played once sound runs, so the
// click that turns sound on also proves it and nobody misses what was waiting.
let missed = null;
const listeners = new Set();
const baseTitle = () => document.querySelector("h1[data-i18n='app.title']")?.textContent || document.title;

/**
 * Set up the sound, or resume it: call at start and from every user gesture. A browser starts audio only
 * after a gesture on the page, so after a reload (the session kept, nobody clicked) it stays suspended and
 * soundState() says "blocked" until the next click or key press.
 */
export function startAudio() {
  if (audio?.state === "running") return;
  try {
    if (!audio) {
      audio = new AudioContext();
      audio.addEventListener("statechange", changed);
    }
    if (audio.state !== "running") audio.resume().catch(() => {}); // refused without a gesture: still blocked
  } catch {
    audio = null; // no audio device: blocked for good, and said so; the visual cue still works
  }
  changed();
}

/** "on", "muted" (the operator's choice) or "blocked" (no sound although not muted: the page must say so). */
export function soundState() {
  if (muted) return "muted";
  return audio?.state === "running" ? "on" : "blocked";
}

/** Called whenever soundState() may have changed. */
export function onSoundChange(fn) {
  listeners.add(fn);
}

function changed() {
  document.body.dataset.sound = soundState(); // lets a test (or an operator tool) see whether a beep is heard
  if (soundState() === "on" && missed) {
    const critical = missed === "critical";
    missed = null;
    play(critical);
  }
  listeners.forEach((fn) => fn());
}

export function toggleMute() {
  muted = !muted;
  localStorage.setItem("console.muted", muted ? "1" : "0");
  if (muted) missed = null; // muting is a choice: nothing is owed when sound comes back
  startAudio(); // the click is a gesture: sound is ready when unmuted; notifies the change either way
  return muted;
}

/** One soft beep, two for a critical incident. */
export function beep(critical = false) {
  document.body.dataset.lastCue = String(Date.now()); // lets a test (or an operator tool) see that it rang
  document.body.dataset.lastCueKind = critical ? "critical" : "normal";
  const state = soundState();
  if (state === "blocked") missed = critical || missed === "critical" ? "critical" : "normal";
  if (state === "on") play(critical);
}

function play(critical) {
  const starts = critical ? [0, 0.25] : [0];
  for (const offset of starts) tone(audio.currentTime + offset, critical ? 988 : 880);
}

function tone(at, hz) {
  const osc = audio.createOscillator();
  const gain = audio.createGain();
  osc.type = "sine";
  osc.frequency.value = hz;
  gain.gain.setValueAtTime(0.0001, at);
  gain.gain.exponentialRampToValueAtTime(0.2, at + 0.02);
  gain.gain.exponentialRampToValueAtTime(0.0001, at + 0.18);
  osc.connect(gain).connect(audio.destination);
  osc.start(at);
  osc.stop(at + 0.2);
}

/** Show how many incidents wait in the tab title, so a background tab still tells. */
export function titleCount(waiting) {
  document.title = waiting ? `(${waiting}) ${baseTitle()}` : baseTitle();
}
