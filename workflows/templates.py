"""Message templates, per language, and the crisis words that trigger an escalation.

Bodies carry the client's first name at most: no clinical detail, no therapist name, no
session facts. Every client message ends with the crisis line, which the workflow appends.
``PLACEHOLDERS`` lists what the workflow fills into each template; a clinic's template that
names anything else is refused when the policy loads, not when the message is due.
"""

from __future__ import annotations

from string import Formatter

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

_TO_CLIENT = frozenset({"first_name", "clinic"})
_TO_STAFF = frozenset({"clinic", "ref"})

PLACEHOLDERS: dict[str, frozenset[str]] = {
    "checkin": _TO_CLIENT,
    "reminder": _TO_CLIENT,
    "crisis_resources": _TO_CLIENT,
    "glad_you_are_ok": _TO_CLIENT,
    "call_requested": _TO_CLIENT,
    "reply_received": _TO_CLIENT,
    "opted_in": _TO_CLIENT,
    "help": _TO_CLIENT,
    "reschedule_offer": _TO_CLIENT | {"slots"},
    "slot_choice": frozenset({"letter", "slot"}),
    "book_online": frozenset({"url"}),
    "slot_time": frozenset({"weekday", "day", "month", "time"}),
    "booking_confirmed": _TO_CLIENT | {"slot"},
    "staff_page": _TO_STAFF | {"reason", "staff_action"},
    "staff_reminder": _TO_STAFF,
    "staff_resolved": _TO_STAFF,
    "staff_cancelled": _TO_STAFF,
    "staff_client_replied": _TO_STAFF | {"reply"},
    "emergency_contact_notice": frozenset({"contact_name", "first_name", "clinic"}),
    "subject_client": _TO_CLIENT,
    "subject_staff": _TO_STAFF,
    "subject_staff_resolved": _TO_STAFF,
    "subject_staff_cancelled": _TO_STAFF,
    "subject_staff_reminder": _TO_STAFF,
    "staff_debrief": _TO_STAFF | {"outcome", "booked"},
    "debrief_booked": frozenset({"slot"}),
    "debrief_not_booked": frozenset(),
    "subject_staff_debrief": _TO_STAFF,
    "caring_first": _TO_CLIENT,
    "caring_contact": _TO_CLIENT,
    "caring_last": _TO_CLIENT,
    "staff_caring_reply": _TO_STAFF | {"due"},
    "subject_staff_caring_reply": _TO_STAFF,
}

# Values of the same types the workflow passes, to try a template's format specs on.
_SAMPLE_VALUES: dict[str, object] = {"day": 23, "month": 11}


def unknown_placeholder_problem(kind: str, text: str) -> str | None:
    """Why the workflow could not fill ``text`` in as the ``kind`` template, or None."""
    allowed = PLACEHOLDERS[kind]
    try:
        named = {field for _, field, _, _ in Formatter().parse(text) if field is not None}
    except ValueError as err:
        return f"not a valid template ({err})"
    unknown = sorted(named - allowed)
    if unknown:
        return (f"unknown placeholder {', '.join('{' + n + '}' for n in unknown)}; "
                f"this message can use {', '.join('{' + n + '}' for n in sorted(allowed))}")
    try:
        text.format(**{name: _SAMPLE_VALUES.get(name, name) for name in allowed})
    except (ValueError, TypeError, IndexError, KeyError) as err:
        return f"cannot be filled in ({type(err).__name__}: {err})"
    return None


class MessageTemplates(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # To the client
    checkin: str
    reminder: str
    crisis_resources: str
    glad_you_are_ok: str
    call_requested: str
    reply_received: str
    opted_in: str
    help: str
    reschedule_offer: str
    slot_choice: str
    book_online: str
    # How a slot reads: {weekday} from weekdays (Monday first), then day, month, time.
    slot_time: str = "{weekday} {month}/{day} {time}"
    weekdays: list[str] = Field(
        default=["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"], min_length=7, max_length=7
    )
    booking_confirmed: str
    # To staff and the emergency contact (the clinic's working language)
    staff_page: str
    staff_reminder: str
    staff_resolved: str
    staff_cancelled: str
    # Added after follow-ups were already running: their inputs carry no such template.
    staff_client_replied: str = (
        "Aftercare {clinic}: the client in follow-up {ref} replied ({reply}). "
        "Resolve it once you have handled it."
    )
    emergency_contact_notice: str
    subject_client: str
    subject_staff: str
    # Subjects that say what a message is: only a page or a reply needs the reader now.
    subject_staff_resolved: str = "Aftercare: follow-up {ref} resolved, no action needed"
    subject_staff_cancelled: str = "Aftercare: follow-up {ref} closed by staff, no action needed"
    subject_staff_reminder: str = "Aftercare: follow-up {ref} acknowledged, still to resolve"
    # To the treating therapist when the protocol ends; {ref} is the session's id.
    staff_debrief: str = (
        "Aftercare {clinic}: the follow-up after session {ref} has ended: {outcome}. "
        "{booked} Please plan the next session with your client.")
    debrief_booked: str = "Next session booked: {slot}."
    debrief_not_booked: str = "No session is booked yet."
    subject_staff_debrief: str = "Aftercare: how the follow-up after session {ref} ended"
    # Caring Contacts: they ask for nothing. The first says when replies are read and how to
    # stop; the last says it is the last.
    caring_first: str = (
        "Hi {first_name}, it's {clinic}. We're thinking of you and will write now and then "
        "in the coming months. No need to reply; we read replies on weekdays. "
        "Text STOP to stop these messages.")
    caring_contact: str = (
        "Hi {first_name}, {clinic} here, just thinking of you and hoping things are going "
        "alright. No need to reply.")
    caring_last: str = (
        "Hi {first_name}, {clinic} here. This is the last of our messages. We have been glad "
        "to write to you, and you are always welcome back.")
    # To the staff member who reads replies to them; {ref} is the series' id.
    staff_caring_reply: str = (
        "Aftercare {clinic}: a client replied to a Caring Contacts message ({ref}). "
        "Please read it in the console and acknowledge it by {due}.")
    subject_staff_caring_reply: str = "Aftercare: a Caring Contacts reply to read ({ref})"

    @field_validator(*PLACEHOLDERS)
    @classmethod
    def _fills_only_known_placeholders(cls, text: str, info: ValidationInfo) -> str:
        problem = unknown_placeholder_problem(info.field_name, text)
        if problem:
            raise ValueError(problem)
        return text


DEFAULT_TEMPLATES: dict[str, MessageTemplates] = {
    "en": MessageTemplates(
        checkin=(
            "Hi {first_name}, this is {clinic} checking in after today. How are you doing? "
            "Reply OK (or 1) if you're alright, CALL (or 2) if you'd like a call from us."
        ),
        reminder=(
            "Hi {first_name}, {clinic} again. We'd like to hear from you: "
            "reply OK (1) if you're alright or CALL (2) for a call."
        ),
        crisis_resources=(
            "Hi {first_name}, {clinic} here. You are not alone: someone from our team is "
            "being contacted to reach you now."
        ),
        glad_you_are_ok="Thank you, {first_name}. We're glad to hear from you.",
        call_requested="Thank you, {first_name}. Someone from {clinic} will call you soon.",
        reply_received="Thank you, {first_name}. Someone from {clinic} will read your message.",
        opted_in=(
            "You're receiving messages from {clinic} again, {first_name}. "
            "Reply OK (1) if you're alright or CALL (2) for a call."
        ),
        help=(
            "{clinic} checks in with you after your session. Reply OK (1) if you're alright, "
            "CALL (2) for a call, STOP to stop these messages."
        ),
        reschedule_offer="{first_name}, would you like to book your next session? {slots}",
        slot_choice="Reply {letter} for {slot}.",
        book_online="Or book at {url}",
        booking_confirmed="You're booked for {slot}, {first_name}. See you then.",
        staff_page=(
            "Aftercare {clinic}: a client follow-up needs you ({reason}). Ref {ref}. "
            "{staff_action}"
        ),
        staff_reminder="Aftercare {clinic}: follow-up {ref} is acknowledged but not resolved.",
        staff_resolved="Aftercare {clinic}: follow-up {ref} is resolved. No action needed.",
        staff_cancelled=(
            "Aftercare {clinic}: follow-up {ref} was closed by staff. No action needed."
        ),
        emergency_contact_notice=(
            "Hi {contact_name}, this is {clinic}. We're trying to reach {first_name}, who named "
            "you as an emergency contact. Please check in with them. If anyone is in immediate "
            "danger, call 911."
        ),
        subject_client="A message from {clinic}",
        subject_staff="Aftercare: follow-up {ref} needs attention",
    ),
    "es": MessageTemplates(
        checkin=(
            "Hola {first_name}, somos {clinic} y queremos saber como estas después de hoy. "
            "Responde OK (o 1) si estas bien, o LLAMAR (o 2) si quieres que te llamemos."
        ),
        reminder=(
            "Hola {first_name}, somos {clinic} de nuevo. Queremos saber de ti: responde OK (1) "
            "si estas bien o LLAMAR (2) para una llamada."
        ),
        crisis_resources=(
            "Hola {first_name}, somos {clinic}. No estas solo/a: estamos contactando a alguien "
            "de nuestro equipo para comunicarse contigo ahora."
        ),
        glad_you_are_ok="Gracias, {first_name}. Nos alegra saber de ti.",
        call_requested="Gracias, {first_name}. Alguien de {clinic} te llamara pronto.",
        reply_received="Gracias, {first_name}. Alguien de {clinic} leera tu mensaje.",
        opted_in=(
            "Vuelves a recibir mensajes de {clinic}, {first_name}. Responde OK (1) si estas "
            "bien o LLAMAR (2) para una llamada."
        ),
        help=(
            "{clinic} se comunica contigo después de tu sesion. Responde OK (1) si estas bien, "
            "LLAMAR (2) para una llamada, STOP para no recibir mas mensajes."
        ),
        reschedule_offer="{first_name}, ¿quieres reservar tu proxima sesion? {slots}",
        slot_choice="Responde {letter} para {slot}.",
        book_online="O reserva en {url}",
        slot_time="{weekday} {day}/{month} {time}",
        weekdays=["lun", "mar", "mié", "jue", "vie", "sab", "dom"],
        booking_confirmed="Tu cita es el {slot}, {first_name}. Hasta entonces.",
        staff_page=(
            "Aftercare {clinic}: un seguimiento necesita atencion ({reason}). Ref {ref}. "
            "{staff_action}"
        ),
        staff_reminder=(
            "Aftercare {clinic}: el seguimiento {ref} esta reconocido pero sin resolver."
        ),
        staff_resolved="Aftercare {clinic}: el seguimiento {ref} esta resuelto.",
        staff_cancelled="Aftercare {clinic}: el seguimiento {ref} fue cerrado por el personal.",
        staff_client_replied=(
            "Aftercare {clinic}: la persona del seguimiento {ref} respondio ({reply}). "
            "Resuélvelo cuando lo hayas atendido."
        ),
        emergency_contact_notice=(
            "Hola {contact_name}, somos {clinic}. Intentamos contactar a {first_name}, "
            "quien te nombro como contacto de emergencia. Por favor, comunicate con esa persona. "
            "Si alguien esta en peligro inmediato, llama al 911."
        ),
        subject_client="Un mensaje de {clinic}",
        subject_staff="Aftercare: el seguimiento {ref} necesita atención",
        subject_staff_resolved="Aftercare: seguimiento {ref} resuelto, nada que hacer",
        subject_staff_cancelled=(
            "Aftercare: seguimiento {ref} cerrado por el personal, nada que hacer"),
        subject_staff_reminder="Aftercare: seguimiento {ref} reconocido, falta resolverlo",
        staff_debrief=(
            "Aftercare {clinic}: el seguimiento tras la sesión {ref} terminó: {outcome}. "
            "{booked} Por favor, planifique la próxima sesión con su cliente."),
        debrief_booked="Próxima sesión reservada: {slot}.",
        debrief_not_booked="Aún no hay sesión reservada.",
        subject_staff_debrief="Aftercare: cómo terminó el seguimiento tras la sesión {ref}",
        caring_first=(
            "Hola {first_name}, somos {clinic}. Pensamos en ti y te escribiremos a veces en "
            "los proximos meses. No hace falta responder; leemos respuestas de lunes a "
            "viernes. STOP para dejar de recibirlos."),
        caring_contact=(
            "Hola {first_name}, somos {clinic}. Solo queriamos decirte que pensamos en ti y "
            "esperamos que estés bien. No hace falta responder."),
        caring_last=(
            "Hola {first_name}, somos {clinic}. Este es el ultimo de nuestros mensajes. Nos ha "
            "alegrado escribirte, y siempre seras bienvenido/a."),
        staff_caring_reply=(
            "Aftercare {clinic}: una persona respondio a un mensaje de Caring Contacts ({ref}). "
            "Léelo en la consola y reconócelo antes del {due}."),
        subject_staff_caring_reply="Aftercare: una respuesta de Caring Contacts ({ref})",
    ),
}

DEFAULT_CRISIS_WORDS: dict[str, list[str]] = {
    "en": [
        "suicide",
        "suicidal",
        "kill myself",
        "end my life",
        "end it all",
        "want to die",
        "hurt myself",
        "self harm",
        "overdose",
        "no reason to live",
        "better off dead",
    ],
    "es": [
        "suicidio",
        "suicidarme",
        "matarme",
        "quitarme la vida",
        "quiero morir",
        "hacerme daño",
        "sobredosis",
        "no quiero vivir",
    ],
}
