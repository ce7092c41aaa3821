// Log in and sign up. After a sign-up the client logs in with the same credentials.

import { describeError } from "../http.js";
import { el, replaceChildren } from "../dom.js";

function field(id, label, attributes) {
  const input = el("input", { id, name: id, required: true, ...attributes });
  return { input, nodes: [el("label", { for: id, text: label }), input] };
}

export class AuthView {
  constructor(root, { session, onSignedIn }) {
    Object.assign(this, { root, session, onSignedIn });
    this.mode = "login";
  }

  show(message = "") {
    this.root.hidden = false;
    this.render(message);
  }

  hide() {
    this.root.hidden = true;
    replaceChildren(this.root);
  }

  render(message) {
    const signup = this.mode === "signup";
    const error = el("p", { class: "form-error", role: "alert", text: message });
    const fields = signup
      ? [
          field("signup-username", "Username", {
            autocomplete: "username",
            minlength: "3",
            maxlength: "32",
            pattern: "[A-Za-z0-9_.\\-]{3,32}",
            title: "3 to 32 letters, digits, '_', '.' or '-'",
            autocapitalize: "none",
            spellcheck: "false",
          }),
          field("signup-email", "Email", { type: "email", autocomplete: "email" }),
          field("signup-display-name", "Display name (optional)", {
            required: false,
            maxlength: "64",
            autocomplete: "nickname",
          }),
          field("signup-password", "Password (8 characters or more)", {
            type: "password",
            autocomplete: "new-password",
            minlength: "8",
            maxlength: "128",
          }),
        ]
      : [
          field("login-name", "Username or email", {
            autocomplete: "username",
            autocapitalize: "none",
            spellcheck: "false",
          }),
          field("login-password", "Password", {
            type: "password",
            autocomplete: "current-password",
          }),
        ];
    const submit = el("button", {
      type: "submit",
      class: "button",
      text: signup ? "Create account" : "Log in",
    });
    const form = el(
      "form",
      { class: "stack", "aria-labelledby": "auth-title" },
      ...fields.flatMap((f) => f.nodes),
      error,
      submit,
    );
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      submit.disabled = true;
      error.textContent = "";
      try {
        const [a, b, c, d] = fields.map((f) => f.input.value);
        if (signup) {
          const body = { username: a.trim(), email: b.trim(), password: d };
          if (c.trim()) body.display_name = c.trim();
          await this.session.signup(body);
          await this.session.login(body.username, body.password);
        } else {
          await this.session.login(a.trim(), b);
        }
        this.onSignedIn();
      } catch (failure) {
        error.textContent = describeError(failure);
        submit.disabled = false;
      }
    });
    const switcher = el("button", {
      type: "button",
      class: "link-button",
      text: signup ? "I already have an account" : "Create an account",
      onClick: () => {
        this.mode = signup ? "login" : "signup";
        this.render("");
        this.root.querySelector("input")?.focus();
      },
    });
    replaceChildren(
      this.root,
      el(
        "div",
        { class: "card auth-card" },
        el("h2", { id: "auth-title", text: signup ? "Create your account" : "Welcome back" }),
        form,
        el("p", { class: "switch" }, switcher),
      ),
    );
  }
}
