// The physics of the games a person plays in the page (CartPole-v1, MountainCar-v0,
// Acrobot-v1): Gymnasium's step functions, operation for operation, in JavaScript numbers
// (IEEE doubles, as NumPy's float64). They only draw the game: the server replays the
// actions in Gymnasium and keeps its own replay (cartpole_core/human.py).
// Defines globalThis.cartpoleLabPhysics = { step(envId, state, action), observe(envId, state) }.
(function () {
  const PI = Math.PI;

  function cartpole(s, action) {
    const gravity = 9.8, masscart = 1.0, masspole = 0.1, length = 0.5, forceMag = 10.0, tau = 0.02;
    const totalMass = masspole + masscart;
    const polemassLength = masspole * length;
    const thetaThreshold = (12 * 2 * PI) / 360;
    let [x, xDot, theta, thetaDot] = s;
    const force = action === 1 ? forceMag : -forceMag;
    const costheta = Math.cos(theta);
    const sintheta = Math.sin(theta);
    const temp = (force + polemassLength * (thetaDot * thetaDot) * sintheta) / totalMass;
    const thetaacc =
      (gravity * sintheta - costheta * temp) /
      (length * (4.0 / 3.0 - (masspole * (costheta * costheta)) / totalMass));
    const xacc = temp - (polemassLength * thetaacc * costheta) / totalMass;
    x = x + tau * xDot;
    xDot = xDot + tau * xacc;
    theta = theta + tau * thetaDot;
    thetaDot = thetaDot + tau * thetaacc;
    const terminated = x < -2.4 || x > 2.4 || theta < -thetaThreshold || theta > thetaThreshold;
    return { state: [x, xDot, theta, thetaDot], reward: 1.0, terminated };
  }

  function mountaincar(s, action) {
    const force = 0.001, gravity = 0.0025, maxSpeed = 0.07, minPosition = -1.2, maxPosition = 0.6;
    let [position, velocity] = s;
    velocity += (action - 1) * force + Math.cos(3 * position) * -gravity;
    velocity = Math.min(Math.max(velocity, -maxSpeed), maxSpeed);
    position += velocity;
    position = Math.min(Math.max(position, minPosition), maxPosition);
    if (position === minPosition && velocity < 0) velocity = 0;
    const terminated = position >= 0.5 && velocity >= 0;
    return { state: [position, velocity], reward: -1.0, terminated };
  }

  // Acrobot-v1: the "book" dynamics, no torque noise, RK4 over dt = 0.2 s.
  function dsdt(y) {
    const m1 = 1.0, m2 = 1.0, l1 = 1.0, lc1 = 0.5, lc2 = 0.5, I1 = 1.0, I2 = 1.0, g = 9.8;
    const [theta1, theta2, dtheta1, dtheta2, a] = y;
    const d1 = m1 * lc1 ** 2 + m2 * (l1 ** 2 + lc2 ** 2 + 2 * l1 * lc2 * Math.cos(theta2)) + I1 + I2;
    const d2 = m2 * (lc2 ** 2 + l1 * lc2 * Math.cos(theta2)) + I2;
    const phi2 = m2 * lc2 * g * Math.cos(theta1 + theta2 - PI / 2.0);
    const phi1 =
      -m2 * l1 * lc2 * Math.pow(dtheta2, 2) * Math.sin(theta2) -
      2 * m2 * l1 * lc2 * dtheta2 * dtheta1 * Math.sin(theta2) +
      (m1 * lc1 + m2 * l1) * g * Math.cos(theta1 - PI / 2) +
      phi2;
    const ddtheta2 =
      (a + (d2 / d1) * phi1 - m2 * l1 * lc2 * Math.pow(dtheta1, 2) * Math.sin(theta2) - phi2) /
      (m2 * lc2 ** 2 + I2 - Math.pow(d2, 2) / d1);
    const ddtheta1 = -(d2 * ddtheta2 + phi1) / d1;
    return [dtheta1, dtheta2, ddtheta1, ddtheta2, 0.0];
  }

  function wrap(x, low, high) {
    const diff = high - low;
    while (x > high) x = x - diff;
    while (x < low) x = x + diff;
    return x;
  }

  function acrobot(s, action) {
    const dt = 0.2, maxVel1 = 4 * PI, maxVel2 = 9 * PI;
    const torque = [-1.0, 0.0, 1.0][action];
    const y0 = [...s, torque];
    const plus = (y, k, h) => y.map((v, i) => v + h * k[i]);
    const dt2 = dt / 2.0;
    const k1 = dsdt(y0);
    const k2 = dsdt(plus(y0, k1, dt2));
    const k3 = dsdt(plus(y0, k2, dt2));
    const k4 = dsdt(plus(y0, k3, dt));
    const ns = y0.map((v, i) => v + (dt / 6.0) * (k1[i] + 2 * k2[i] + 2 * k3[i] + k4[i])).slice(0, 4);
    ns[0] = wrap(ns[0], -PI, PI);
    ns[1] = wrap(ns[1], -PI, PI);
    ns[2] = Math.min(Math.max(ns[2], -maxVel1), maxVel1);
    ns[3] = Math.min(Math.max(ns[3], -maxVel2), maxVel2);
    const terminated = -Math.cos(ns[0]) - Math.cos(ns[1] + ns[0]) > 1.0;
    return { state: ns, reward: terminated ? 0.0 : -1.0, terminated };
  }

  const STEPS = { "CartPole-v1": cartpole, "MountainCar-v0": mountaincar, "Acrobot-v1": acrobot };

  function step(envId, state, action) {
    return STEPS[envId](state, action);
  }

  // What the env returns as its observation (float32, as Gymnasium's), for the page's readout.
  function observe(envId, s) {
    const f = Math.fround;
    if (envId === "Acrobot-v1") {
      return [Math.cos(s[0]), Math.sin(s[0]), Math.cos(s[1]), Math.sin(s[1]), s[2], s[3]].map(f);
    }
    return s.map(f);
  }

  globalThis.cartpoleLabPhysics = { step, observe, envs: Object.keys(STEPS) };
})();
