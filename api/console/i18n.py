"""The staff console's words in English and Spanish: the staff member's policy language,
or before sign-in the browser's."""

from __future__ import annotations

from fastapi import Request

TEXT: dict[str, dict[str, str]] = {
    "en": {
        "console": "Aftercare staff console",
        "skip": "Skip to content",
        "sign_in": "Sign in",
        "sign_out": "Sign out",
        "clinic": "Clinic",
        "staff_id": "Staff id",
        "send_code": "Send me a code",
        "code_sent": "If that staff id is known at that clinic, a sign-in code is on its way "
                     "by your usual channel. It works for 15 minutes; the link in the same "
                     "message signs you in on the device that opens it.",
        "code": "Sign-in code",
        "sign_in_with_code": "Sign in",
        "code_refused": "That code did not work. A code expires after 15 minutes or three "
                        "wrong tries: ask for a new one, or use the link in its message.",
        "sign_in_link_text": "This link from your sign-in code's message signs you in "
                             "on this device, once.",
        "sign_in_link_expired_text": "It was used, or its code is older than 15 minutes. "
                                     "Ask for a new code.",
        "new_code": "Ask for a new code",
        "board": "Open follow-ups",
        "closed_recently": "Closed in the last 7 days",
        "phase": "Phase",
        "risk": "Risk",
        "any": "Any",
        "filter": "Filter",
        "next_deadline": "Next deadline",
        "escalation": "Escalation",
        "opted_out": "Opted out",
        "follow_up": "Follow-up",
        "outcome": "Outcome",
        "closed_at": "Closed",
        "none_open": "No open follow-ups.",
        "since_escalation": "Escalated",
        "closed_cancelled": "cancelled by staff",
        "age": "Departed",
        "ago": "{} ago",
        "state_as_of": "State as of",
        "page_of": "Page {page} of {pages}",
        "more": "{count} more",
        "earlier": "Previous page",
        "being_set_up": "This follow-up is being set up: its state shows in a moment.",
        "none_closed": "None closed in the last 7 days.",
        "yes": "yes",
        "no": "no",
        "paged": "paged",
        "acknowledged_by": "acknowledged by",
        "not_acknowledged": "nobody has acknowledged yet",
        "resolved_by": "resolved by",
        "not_escalated": "none",
        "exhausted": "nobody answered: paging again",
        "escalation_page": "Escalation",
        "reason": "Reason",
        "ref": "Ref",
        "since_departure": "Time since departure",
        "client": "Client",
        "call": "Call",
        "emergency_contact": "Emergency contact (consent on file)",
        "what_was_tried": "What was tried",
        "when": "When",
        "step": "Step",
        "channel": "Channel",
        "actor": "Actor",
        "to_whom": "To",
        "acknowledge": "Acknowledge",
        "resolve": "Resolve",
        "note": "Note (optional, no client details)",
        "cancel": "Cancel follow-up",
        "cancel_reason": "Why is it closed?",
        "state": "State",
        "contact_hidden": "Contact details are shown while an escalation is open.",
        "refreshes": "This page refreshes itself while the escalation is open.",
        "trail": "Audit trail",
        "chain_verified": "Chain verified: every entry is sealed and in order.",
        "chain_broken": "Chain broken",
        "no_entries": "No entries stored for this follow-up yet.",
        "export": "Export",
        "open_escalation": "Open the escalation page",
        "open_escalation_text": "This link opens the escalation it was sent for, once. "
                                "It signs you in for that follow-up only.",
        "refused": "Not available",
        "refused_text": "This page is not available to you. If you were sent a link, it may "
                        "have been used, expired, or changed; sign in instead.",
        "link_used": "This link was already used",
        "link_used_text": "Each escalation link opens once. Sign in to see the follow-up.",
        "link_expired": "This link has expired",
        "link_expired_text": "The escalation has closed, or the link is older than 24 hours.",
        "escalation_starting": "This escalation is just starting",
        "escalation_starting_text": "Its details are on their way: reload this page in a "
                                    "moment.",
        "link_invalid": "This link is not valid",
        "link_invalid_text": "It may have been cut short or changed.",
        "form_refused": "The form was refused",
        "form_refused_text": "It was not sent from this console page. Go back, reload the "
                             "page and try again.",
        "action_refused": "Nothing was changed",
        "done_acknowledge": "Acknowledged. The next level will not be paged.",
        "done_resolve": "Resolved. Everyone paged is being told.",
        "done_cancel": "The follow-up is closed.",
        "done_stop_caring_contacts": "The Caring Contacts series is stopped: no more "
                                     "messages go out.",
        "caring_series": "Caring Contacts series",
        "series_active": "sending",
        "series_stopped": "stopped",
        "series_ended": "ended",
        "messages_sent": "Messages sent",
        "next_send": "Next message",
        "reply_to_read_by": "Reply to read by",
        "stop_series": "Stop the series",
        "stop_series_reason": "Why stop it?",
        "board_link": "Clinic board",
        "outcome_reached_client": "Reached the client",
        "outcome_emergency_services_contacted": "Emergency services contacted",
        "outcome_could_not_reach": "Could not reach the client",
        "outcome_other": "Other",
    },
    "es": {
        "console": "Consola del personal de Aftercare",
        "skip": "Saltar al contenido",
        "sign_in": "Iniciar sesión",
        "sign_out": "Cerrar sesión",
        "clinic": "Clínica",
        "staff_id": "Identificador de personal",
        "send_code": "Enviarme un código",
        "code_sent": "Si ese identificador existe en esa clínica, un código de acceso va en "
                     "camino por su canal habitual. Sirve durante 15 minutos; el enlace del "
                     "mismo mensaje le da acceso en el dispositivo que lo abra.",
        "code": "Código de acceso",
        "sign_in_with_code": "Entrar",
        "code_refused": "Ese código no sirvió. Un código caduca a los 15 minutos o tras tres "
                        "intentos fallidos: pida uno nuevo o use el enlace de su mensaje.",
        "sign_in_link_text": "Este enlace del mensaje con su código de acceso le da acceso "
                             "en este dispositivo, una sola vez.",
        "sign_in_link_expired_text": "Ya se usó, o su código tiene más de 15 minutos. Pida un "
                                     "código nuevo.",
        "new_code": "Pedir un código nuevo",
        "board": "Seguimientos abiertos",
        "closed_recently": "Cerrados en los últimos 7 días",
        "phase": "Fase",
        "risk": "Riesgo",
        "any": "Cualquiera",
        "filter": "Filtrar",
        "next_deadline": "Próximo plazo",
        "escalation": "Escalamiento",
        "opted_out": "Dado de baja",
        "follow_up": "Seguimiento",
        "outcome": "Resultado",
        "closed_at": "Cerrado",
        "none_open": "No hay seguimientos abiertos.",
        "since_escalation": "Escalado",
        "closed_cancelled": "cerrado por el personal",
        "age": "Salió",
        "ago": "hace {}",
        "state_as_of": "Estado a las",
        "page_of": "Página {page} de {pages}",
        "more": "{count} más",
        "earlier": "Página anterior",
        "being_set_up": "Este seguimiento se está preparando: su estado aparece en un momento.",
        "none_closed": "Ninguno cerrado en los últimos 7 días.",
        "yes": "sí",
        "no": "no",
        "paged": "avisado",
        "acknowledged_by": "atendido por",
        "not_acknowledged": "nadie lo ha atendido aún",
        "resolved_by": "resuelto por",
        "not_escalated": "ninguno",
        "exhausted": "nadie respondió: se vuelve a avisar",
        "escalation_page": "Escalamiento",
        "reason": "Motivo",
        "ref": "Ref.",
        "since_departure": "Tiempo desde la salida",
        "client": "Cliente",
        "call": "Llamar",
        "emergency_contact": "Contacto de emergencia (con consentimiento)",
        "what_was_tried": "Lo que se intentó",
        "when": "Cuándo",
        "step": "Paso",
        "channel": "Canal",
        "actor": "Actor",
        "to_whom": "A quién",
        "acknowledge": "Atender",
        "resolve": "Resolver",
        "note": "Nota (opcional, sin datos del cliente)",
        "cancel": "Cerrar el seguimiento",
        "cancel_reason": "¿Por qué se cierra?",
        "state": "Estado",
        "contact_hidden": "Los datos de contacto se muestran mientras haya un escalamiento "
                          "abierto.",
        "refreshes": "Esta página se actualiza sola mientras el escalamiento está abierto.",
        "trail": "Registro de auditoría",
        "chain_verified": "Cadena verificada: cada entrada está sellada y en orden.",
        "chain_broken": "Cadena rota",
        "no_entries": "Aún no hay entradas guardadas para este seguimiento.",
        "export": "Exportar",
        "open_escalation": "Abrir la página del escalamiento",
        "open_escalation_text": "Este enlace abre, una sola vez, el escalamiento para el que "
                                "se envió. Le da acceso solo a ese seguimiento.",
        "refused": "No disponible",
        "refused_text": "Esta página no está disponible para usted. Si recibió un enlace, "
                        "puede que ya se haya usado, caducado o modificado; inicie sesión.",
        "link_used": "Este enlace ya se usó",
        "link_used_text": "Cada enlace de escalamiento se abre una vez. Inicie sesión para ver "
                          "el seguimiento.",
        "link_expired": "Este enlace caducó",
        "link_expired_text": "El escalamiento se cerró, o el enlace tiene más de 24 horas.",
        "escalation_starting": "Este escalamiento acaba de empezar",
        "escalation_starting_text": "Sus datos están en camino: recargue esta página en un "
                                    "momento.",
        "link_invalid": "Este enlace no es válido",
        "link_invalid_text": "Puede que esté incompleto o modificado.",
        "form_refused": "Se rechazó el formulario",
        "form_refused_text": "No se envió desde esta página de la consola. Vuelva atrás, "
                             "recargue la página e inténtelo de nuevo.",
        "action_refused": "No se cambió nada",
        "done_acknowledge": "Atendido. No se avisará al siguiente nivel.",
        "done_resolve": "Resuelto. Se está avisando a todas las personas contactadas.",
        "done_cancel": "El seguimiento está cerrado.",
        "done_stop_caring_contacts": "La serie de Caring Contacts está detenida: no se "
                                     "envían más mensajes.",
        "caring_series": "Serie de Caring Contacts",
        "series_active": "enviando",
        "series_stopped": "detenida",
        "series_ended": "terminada",
        "messages_sent": "Mensajes enviados",
        "next_send": "Próximo mensaje",
        "reply_to_read_by": "Respuesta por leer antes de",
        "stop_series": "Detener la serie",
        "stop_series_reason": "¿Por qué se detiene?",
        "board_link": "Tablero de la clínica",
        "outcome_reached_client": "Se habló con el cliente",
        "outcome_emergency_services_contacted": "Se llamó a servicios de emergencia",
        "outcome_could_not_reach": "No se pudo contactar al cliente",
        "outcome_other": "Otro",
    },
}


def browser_language(request: Request) -> str:
    """Before sign-in: Spanish when the browser prefers it, otherwise English."""
    accepted = request.headers.get("accept-language", "")
    first = accepted.split(",")[0].strip().lower()
    return "es" if first.startswith("es") else "en"


# Why staff were paged, as the workflow records it (English) and as each language says it.
REASONS: dict[str, dict[str, str]] = {
    "es": {
        "imminent risk": "riesgo inminente",
        "crisis words in a reply": "palabras de crisis en una respuesta",
        "no reply": "sin respuesta",
        "client unreachable": "no se puede contactar al cliente",
        "client asked for a call": "el cliente pidió una llamada",
        "client reply needs reading": "hay que leer la respuesta del cliente",
        "opted out at high risk": "se dio de baja con riesgo alto",
        "clinic booking failed": "falló la reserva en la clínica",
    },
}


# Where a follow-up stands and how at risk the client is, in words (workflows.models.Phase
# and RiskLevel hold identifiers).
PHASES: dict[str, dict[str, str]] = {
    "en": {
        "received": "received",
        "waiting_to_check_in": "waiting to check in",
        "awaiting_reply": "waiting for the client's reply",
        "escalating": "paging staff",
        "awaiting_resolution": "acknowledged, waiting to be resolved",
        "offering_reschedule": "offering a new appointment",
        "listening": "done, still reading the client's texts",
        "caring_contacts": "Caring Contacts: brief messages over months",
        "closed": "closed",
    },
    "es": {
        "received": "recibido",
        "waiting_to_check_in": "esperando para escribir al cliente",
        "awaiting_reply": "esperando la respuesta del cliente",
        "escalating": "avisando al personal",
        "awaiting_resolution": "atendido, pendiente de resolver",
        "offering_reschedule": "ofreciendo una nueva cita",
        "listening": "terminado, aún lee los mensajes del cliente",
        "caring_contacts": "Caring Contacts: mensajes breves durante meses",
        "closed": "cerrado",
    },
}
RISKS: dict[str, dict[str, str]] = {
    "es": {"low": "bajo", "moderate": "moderado", "high": "alto", "imminent": "inminente"},
}


def words(language: str) -> dict[str, str]:
    return TEXT.get(language, TEXT["en"])


def reason_in(language: str, reason: str) -> str:
    """An escalation's reason in the reader's language (English when it has no entry)."""
    return REASONS.get(language, {}).get(reason, reason)


def phase_in(language: str, phase: str) -> str:
    return PHASES.get(language, PHASES["en"]).get(phase, phase.replace("_", " "))


def risk_in(language: str, risk: str) -> str:
    return RISKS.get(language, {}).get(risk, risk)
