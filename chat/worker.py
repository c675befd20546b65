def on_process_start() -> None:
    pass
