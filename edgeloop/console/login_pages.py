"""Console routes: logging in (admin token + the operator's name) and out.

``GET /console/login`` shows the form (with a login-CSRF double-submit value in a cookie and a hidden
field); ``POST /console/login`` checks origin, that value, the rate limit and the token, then sets the
session cookie and goes to ``next`` (same-site console paths only); ``POST /console/logout`` (CSRF-checked)
clears it. Leaves out the session format and checks (edgeloop.console.auth) and the page shell (layout).
"""

from __future__ import annotations

import hmac

from fastapi import Request
from fastapi.responses import RedirectResponse, Response

from edgeloop.console import auth
from edgeloop.console.layout import esc, page

__all__ = ["router"]

router = auth.console_router()


def _form(request: Request, next_path: str, name: str = "", message: str = "", status_code: int = 200) -> Response:
    login_value = auth.login_cookie_value(request)
    problem = f'<div class="message" role="alert"><p>{esc(message)}</p></div>' if message else ""
    body = (
        f"<h1>Log in to the console</h1>{problem}"
        f'<form method="post" action="/console/login" class="confirm login" autocomplete="off">'
        f'<input type="hidden" name="login_csrf" value="{esc(login_value)}">'
        f'<input type="hidden" name="next" value="{esc(next_path)}">'
        f'<p><label>Your name (recorded with every action you take)<br>'
        f'<input name="who" required maxlength="64" value="{esc(name)}" autofocus></label></p>'
        f'<p><label>Admin token<br><input name="token" type="password" required size="50"></label></p>'
        f'<p class="muted">The hub wrote its admin token, on its first start, to the file named by '
        f"<code>hub.admin_token_file</code> in params.yaml (by default <code>keys/hub-admin.token</code> in the "
        f"project folder).</p>"
        f'<button type="submit">Log in</button></form>'
    )
    response = page("Log in", body, None, "", status_code)
    auth.set_login_cookie(request, response, login_value)
    return response


@router.get("/console/login")
def login_page(request: Request, next: str = "") -> Response:  # noqa: A002 - the query parameter's name
    """The login form (already logged in: straight on to ``next``)."""
    if auth.optional_operator(request) is not None:
        return RedirectResponse(auth.safe_next(next), status_code=303)
    return _form(request, auth.safe_next(next))


@router.post("/console/login")
async def login(request: Request) -> Response:
    """Check the form; on success set the session cookie and go on to ``next``."""
    auth.check_origin(request)
    form = await auth.read_form(request)
    next_path = auth.safe_next(str(form.get("next", "")))
    name = str(form.get("who", "")).strip()
    sent, expected = str(form.get("login_csrf", "")), request.cookies.get(auth.LOGIN_COOKIE, "")
    if not expected or not hmac.compare_digest(sent, expected):
        raise auth.PageError(403, "Refused", "The login form is out of date or your browser refused its cookie; "
                                             "open the login page again.")
    if not auth.login_allowed(request):
        auth.note_failed_login(request, "too many attempts")
        return _form(request, next_path, name, f"Too many failed logins from your address; wait a minute "
                     f"(at most {auth.LOGIN_ATTEMPTS} a minute).", 429)
    if not auth.NAME_PATTERN.match(name):
        return _form(request, next_path, "", "Type your name (letters, digits, space, . _ @ -; up to 64 "
                     "characters): it is recorded with every action you take.", 400)
    if not auth.check_login_token(request, str(form.get("token", "")).strip()):
        auth.note_failed_login(request, "wrong admin token")
        return _form(request, next_path, name, "That is not this hub's admin token.", 401)
    response = RedirectResponse(next_path, status_code=303)
    auth.set_session_cookie(request, response, name)
    return response


@router.post("/console/logout")
async def logout(request: Request) -> Response:
    """End this browser's session (CSRF-checked)."""
    who = auth.operator(request)
    await auth.checked_form(request, who)
    response = RedirectResponse("/console/login", status_code=303)
    auth.clear_session_cookie(request, response)
    return response
