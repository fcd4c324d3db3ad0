// The game in the page (Play it yourself): drawn on a canvas, played with the keyboard or the
// buttons, stepped by pages/game_physics.js (prepended by pages/game.py). When a game ends it
// sends only what the player did, {env_id, seed, actions}, as the trigger value "game".
export default function (component) {
  const { data, setTriggerValue, parentElement } = component;
  const P = globalThis.cartpoleLabPhysics;
  const root = parentElement.querySelector(".game");
  const canvas = root.querySelector("canvas");
  const ctx = canvas.getContext("2d");
  const readout = root.querySelector(".readout");
  const status = root.querySelector(".status");
  const speedBox = root.querySelector("select.speed");
  const buttons = root.querySelector(".buttons");
  const env = data.env_id;
  const keys = data.keys; // one label per action, in action order
  const idle = data.idle_action; // the action when no key is held (null: keep the last one)
  const maxSteps = data.max_steps;
  // A touch screen (a phone, a tablet) has no arrow keys: its words speak of the buttons.
  const touch = globalThis.matchMedia ? globalThis.matchMedia("(pointer: coarse)").matches : false;
  const idleWords = keys.length === 3 ? "it does nothing" : "it keeps pushing the last way";

  let state = data.start.slice();
  let actions = [];
  let held = null; // the action of the key or button held now
  let last = null; // the last action pushed (CartPole keeps pushing that way)
  let score = 0;
  let timer = null;
  let over = false;

  buttons.innerHTML = "";
  keys.forEach((label, action) => {
    const b = document.createElement("button");
    b.textContent = label;
    b.title = data.action_names[action];
    b.setAttribute("aria-label", data.action_names[action]);
    b.dataset.action = String(action);
    b.addEventListener("pointerdown", (e) => {
      e.preventDefault();
      if (b.setPointerCapture) b.setPointerCapture(e.pointerId); // a thumb that slides off still holds
      b.classList.add("held");
      press(action);
    });
    for (const end of ["pointerup", "pointercancel", "lostpointercapture"]) {
      b.addEventListener(end, () => { b.classList.remove("held"); release(action); });
    }
    b.addEventListener("contextmenu", (e) => e.preventDefault()); // a long press is a push, not a menu
    buttons.appendChild(b);
  });
  const named = keys.map((label, action) => `${label} ${data.action_names[action]}`).join(", ");
  root.querySelector(".keys").textContent = touch
    ? `Your buttons, under the game: ${named}. Hold one to push (none held: ${idleWords}).`
    : `Your keys: ${named} (no key: ${idleWords}).`;

  const KEYMAP = { ArrowLeft: 0, a: 0, ArrowRight: keys.length - 1, d: keys.length - 1 };
  if (keys.length === 3) { KEYMAP.ArrowDown = 1; KEYMAP.s = 1; }

  function press(action) {
    held = action;
    last = action;
    if (!timer && !over) start();
  }
  function release(action) {
    if (held === action) held = null;
  }
  function onKeyDown(e) {
    if (!(e.key in KEYMAP)) return;
    e.preventDefault();
    if (!e.repeat) press(KEYMAP[e.key]);
  }
  function onKeyUp(e) {
    if (e.key in KEYMAP) release(KEYMAP[e.key]);
  }
  window.addEventListener("keydown", onKeyDown);
  window.addEventListener("keyup", onKeyUp);

  function start() {
    const hz = 50 * Number(speedBox.value);
    const how = touch ? "hold a button to push" : "hold a key (or a button) to push";
    status.textContent = `Playing at ${speedBox.options[speedBox.selectedIndex].text}: ${how}.`;
    root.dataset.state = "playing";
    timer = setInterval(tick, 1000 / hz);
  }

  function tick() {
    const action = held !== null ? held : idle !== null ? idle : last;
    const out = P.step(env, state, action);
    state = out.state;
    actions.push(action);
    score += out.reward;
    draw();
    if (out.terminated || actions.length >= maxSteps) finish(out.terminated);
  }

  function finish(terminated) {
    clearInterval(timer);
    timer = null;
    over = true;
    status.textContent = `Game over after ${actions.length} steps: score ${score}. ` +
      (terminated ? "" : "(time limit) ") + "Sending it to the server…";
    root.dataset.state = "over";
    setTriggerValue("game", { env_id: env, seed: data.seed, actions });
  }

  function draw() {
    const w = canvas.width, h = canvas.height;
    ctx.clearRect(0, 0, w, h);
    ctx.fillStyle = "#fafafa";
    ctx.fillRect(0, 0, w, h);
    ctx.lineWidth = 2;
    if (env === "CartPole-v1") {
      const scale = w / 4.8, cartY = h * 0.7, x = w / 2 + state[0] * scale;
      ctx.strokeStyle = "#999"; ctx.beginPath(); ctx.moveTo(0, cartY + 15); ctx.lineTo(w, cartY + 15); ctx.stroke();
      ctx.fillStyle = "#333"; ctx.fillRect(x - 25, cartY - 15, 50, 30);
      const len = scale * 1.0;
      ctx.strokeStyle = "#c98a4b"; ctx.lineWidth = 10; ctx.beginPath();
      ctx.moveTo(x, cartY - 15); ctx.lineTo(x + len * Math.sin(state[2]), cartY - 15 - len * Math.cos(state[2])); ctx.stroke();
    } else if (env === "MountainCar-v0") {
      const X = (p) => ((p + 1.2) / 1.8) * w, Y = (p) => h - (Math.sin(3 * p) * 0.45 + 0.55) * h * 0.8 - 20;
      ctx.strokeStyle = "#333"; ctx.beginPath();
      for (let p = -1.2; p <= 0.6; p += 0.01) ctx.lineTo(X(p), Y(p));
      ctx.stroke();
      ctx.strokeStyle = "#d1495b"; ctx.beginPath(); ctx.moveTo(X(0.5), Y(0.5)); ctx.lineTo(X(0.5), Y(0.5) - 40); ctx.stroke();
      ctx.fillStyle = "#00798c"; ctx.beginPath(); ctx.arc(X(state[0]), Y(state[0]) - 8, 10, 0, 2 * Math.PI); ctx.fill();
    } else {
      const cx = w / 2, cy = h / 2, L = h / 5;
      const x1 = cx + L * Math.sin(state[0]), y1 = cy + L * Math.cos(state[0]);
      const x2 = x1 + L * Math.sin(state[0] + state[1]), y2 = y1 + L * Math.cos(state[0] + state[1]);
      ctx.strokeStyle = "#999"; ctx.beginPath(); ctx.moveTo(0, cy - L); ctx.lineTo(w, cy - L); ctx.stroke();
      ctx.strokeStyle = "#00798c"; ctx.lineWidth = 8; ctx.beginPath(); ctx.moveTo(cx, cy); ctx.lineTo(x1, y1); ctx.lineTo(x2, y2); ctx.stroke();
    }
    const obs = P.observe(env, state);
    readout.textContent = data.obs_names.map((n, i) => `${n} ${obs[i].toFixed(3)}`).join(" · ") +
      ` — step ${actions.length}, score ${score}`;
    root.dataset.obs = JSON.stringify(obs);
    root.dataset.steps = String(actions.length);
  }

  status.textContent = touch
    ? `Your game ${data.number}: tap and hold ${keys.join(" or ")} to start.`
    : `Your game ${data.number}: press ${keys.join(" or ")} (or a button) to start.`;
  root.dataset.state = "ready";
  draw();
  return () => {
    clearInterval(timer);
    window.removeEventListener("keydown", onKeyDown);
    window.removeEventListener("keyup", onKeyUp);
  };
}
