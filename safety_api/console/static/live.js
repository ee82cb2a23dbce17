// The live link: the /control socket, and a heartbeat that travels the whole path (API -> Redis queue ->
// socket) so the page knows it is live, not merely connected. "up" only after an echo came back.
/* global io */
import { accessToken, api, refresh } from "./session.js";

const EVENTS = ["incident.created", "incident.updated", "positions", "walk.escalated"];
const HEARTBEAT_EVENT = "console.heartbeat";

export class Live {
  constructor({ heartbeatS = 3, onEvent, onUp, onDown }) {
    this.up = false;
    this.pending = null; // the nonce whose echo we wait for
    this.handlers = { onEvent, onUp, onDown };
    this.socket = io("/control", {
      auth: (send) => send({ token: accessToken() }), // read at every (re)connect: always the fresh token
      transports: ["websocket", "polling"],
      reconnectionDelay: 500,
      reconnectionDelayMax: 4000,
    });
    this.bind();
    this.timer = setInterval(() => this.beat(), heartbeatS * 1000);
  }

  bind() {
    const { socket } = this;
    socket.on("connect", () => this.beat(true));
    socket.on("disconnect", (reason) => {
      this.setUp(false);
      // The server dropped us: come back, unless this tab signed out (the server closes a sign-in's sockets).
      if (reason === "io server disconnect" && accessToken()) socket.connect();
    });
    socket.on("connect_error", async (err) => {
      this.setUp(false);
      if (err?.data?.status === 401) await refresh().catch(() => {}); // expired token: refresh, retry
      if (!socket.active) setTimeout(() => socket.connect(), 1000);
    });
    socket.on(HEARTBEAT_EVENT, ({ nonce } = {}) => {
      if (nonce && nonce === this.pending) {
        this.pending = null;
        this.setUp(true);
      }
    });
    for (const name of EVENTS) socket.on(name, (payload) => this.handlers.onEvent(name, payload));
  }

  /** Send a nonce through the API; the previous one still unanswered means the live path is broken. */
  async beat(fresh = false) {
    if (!this.socket.connected) {
      this.setUp(false);
      return;
    }
    if (this.pending && !fresh) this.setUp(false);
    const nonce = Math.random().toString(36).slice(2);
    this.pending = nonce;
    try {
      await api("/api/v1/console/heartbeat", { method: "POST", body: { sid: this.socket.id, nonce } });
    } catch {
      this.setUp(false);
    }
  }

  setUp(up) {
    if (up === this.up) return;
    this.up = up;
    (up ? this.handlers.onUp : this.handlers.onDown)();
  }

  close() {
    clearInterval(this.timer);
    this.socket.disconnect();
  }
}
