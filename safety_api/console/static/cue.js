// The cue of a new incident: a short WebAudio beep (no sound files) and the count in the tab title.
let audio = null;
let muted = localStorage.getItem("console.muted") === "1";
const baseTitle = () => document.querySelector("h1[data-i18n='app.title']")?.textContent || document.title;

/** Browsers start audio only after a user gesture: call this from one (the login, any click). */
export function unlockAudio() {
  try {
    audio ??= new AudioContext();
    if (audio.state === "suspended") audio.resume();
  } catch {
    audio = null; // no audio device: the visual cue still works
  }
}

export function isMuted() {
  return muted;
}

export function toggleMute() {
  muted = !muted;
  localStorage.setItem("console.muted", muted ? "1" : "0");
  if (!muted) unlockAudio();
  return muted;
}

/** One soft beep, two for a critical incident. */
export function beep(critical = false) {
  document.body.dataset.lastCue = String(Date.now()); // lets a test (or an operator tool) see that it rang
  document.body.dataset.lastCueKind = critical ? "critical" : "normal";
  if (muted || !audio) return;
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
