from kizuna.migrate import run_env

run_env()
